package rpc

import (
	"encoding/json"
	"fmt"
	"mime"

	"google.golang.org/protobuf/proto"
)

// Content types the SDK encodes and decodes.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/protobuf"
)

// codec turns a request or reply value into a message body and back.
type codec interface {
	contentType() string
	// marshal encodes v, appending to dst where it can (protobuf; JSON
	// returns a new slice): a caller that reuses its buffer saves the
	// body's allocation.
	marshal(dst []byte, v any) ([]byte, error)
	unmarshal(data []byte, v any) error
}

type jsonCodec struct{}

func (jsonCodec) contentType() string                     { return ContentTypeJSON }
func (jsonCodec) marshal(_ []byte, v any) ([]byte, error) { return json.Marshal(v) }
func (jsonCodec) unmarshal(data []byte, v any) error {
	if len(data) == 0 {
		// An empty body is the zero value: a method whose request has no
		// fields may be called with nothing at all (e.g. from the gateway).
		return nil
	}
	return json.Unmarshal(data, v)
}

type protoCodec struct{}

func (protoCodec) contentType() string { return ContentTypeProtobuf }
func (protoCodec) marshal(dst []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a proto.Message", v)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// maxKeptBody bounds an encoding buffer kept for reuse, so one large
// message does not pin its size for the life of a pooled call or worker.
const maxKeptBody = 64 << 10

// keepBody is buf to keep for the next encoding, or nil when too large.
func keepBody(buf []byte) []byte {
	if cap(buf) > maxKeptBody {
		return nil
	}
	return buf[:0]
}
func (protoCodec) unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}

// codecFor is the codec a caller uses for a request value: protobuf for a
// proto.Message, JSON for anything else.
func codecFor(v any) codec {
	if _, ok := v.(proto.Message); ok {
		return protoCodec{}
	}
	return jsonCodec{}
}

// codecByType is the codec for a received content type. An empty type is
// JSON (the convention's default); parameters such as "; charset=utf-8"
// are ignored. ok is false for a type the SDK cannot decode.
func codecByType(contentType string) (c codec, ok bool) {
	switch contentType {
	case "", ContentTypeJSON: // the common cases, without parsing
		return jsonCodec{}, true
	case ContentTypeProtobuf:
		return protoCodec{}, true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, false
	}
	switch mt {
	case ContentTypeJSON, "text/json":
		return jsonCodec{}, true
	case ContentTypeProtobuf, "application/x-protobuf", "application/vnd.google.protobuf":
		return protoCodec{}, true
	}
	return nil, false
}
