package rpc

import (
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestCodecs(t *testing.T) {
	for ct, want := range map[string]string{
		"": ContentTypeJSON, "application/json": ContentTypeJSON, "application/json; charset=utf-8": ContentTypeJSON,
		"application/protobuf": ContentTypeProtobuf, "application/x-protobuf": ContentTypeProtobuf,
		"text/plain": "", "garbage;;": "",
	} {
		c, ok := codecByType(ct)
		if (want == "") == ok || ok && c.contentType() != want {
			t.Errorf("%q: %v %v", ct, c, ok)
		}
	}
	if codecFor(wrapperspb.String("x")).contentType() != ContentTypeProtobuf || codecFor(&struct{}{}).contentType() != ContentTypeJSON {
		t.Fatal("codec chosen by request type")
	}
	if _, err := (protoCodec{}).marshal(nil, &struct{}{}); err == nil {
		t.Fatal("protobuf codec took a non-proto value")
	}
	if err := (protoCodec{}).unmarshal(nil, &struct{}{}); err == nil {
		t.Fatal("protobuf codec decoded into a non-proto value")
	}
}
