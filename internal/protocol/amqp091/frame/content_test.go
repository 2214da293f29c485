package frame

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func fullProperties() Properties {
	return Properties{
		ContentType:     "application/json",
		ContentEncoding: "gzip",
		Headers:         allTypesTable(),
		DeliveryMode:    2,
		Priority:        9,
		CorrelationID:   "corr",
		ReplyTo:         "amq.rabbitmq.reply-to",
		Expiration:      "60000",
		MessageID:       "msg-1",
		Timestamp:       time.Unix(1700000000, 0).UTC(),
		Type:            "order.created",
		UserID:          "guest",
		AppID:           "herald-test",
		ClusterID:       "c1",
	}
}

func TestContentHeaderRoundTrip(t *testing.T) {
	full := fullProperties()
	for name, p := range map[string]Properties{
		"none":     {},
		"full":     full,
		"mode":     {DeliveryMode: 2},
		"headers":  {Headers: Table{"x-death": []any{Table{"count": int64(1), "queue": "q"}}}},
		"time":     {Timestamp: time.Unix(1, 0).UTC()},
		"last bit": {ClusterID: "x"},
	} {
		in := ContentHeader{ClassID: ClassBasic, BodySize: 1 << 40, Properties: p}
		b := AppendContentHeader(nil, &in)
		var out ContentHeader
		if err := DecodeContentHeader(b, &out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("%s:\n got %+v\nwant %+v", name, out, in)
		}
		for n := range len(b) {
			if err := DecodeContentHeader(b[:n], &out); !errors.Is(err, ErrSyntax) {
				t.Fatalf("%s truncated to %d: %v", name, n, err)
			}
		}
		if err := DecodeContentHeader(append(b, 0), &out); !errors.Is(err, ErrSyntax) {
			t.Fatalf("%s with trailing byte: %v", name, err)
		}
	}
	// Every flag bit 15..2 is used, in order.
	b := AppendContentHeader(nil, &ContentHeader{ClassID: ClassBasic, Properties: full})
	if b[12] != 0xff || b[13] != 0xfc {
		t.Errorf("full flags %#x %#x", b[12], b[13])
	}
}

func TestContentHeaderGolden(t *testing.T) {
	h := ContentHeader{ClassID: ClassBasic, BodySize: 5, Properties: Properties{
		ContentType:  "text/plain",
		DeliveryMode: 2,
		Timestamp:    time.Unix(0x01020304, 0),
		ClusterID:    "z",
	}}
	want := unhex(t, `003c 0000 0000000000000005
		9044
		0a 746578742f706c61696e
		02
		0000000001020304
		01 7a`)
	if got := AppendContentHeader(nil, &h); !bytes.Equal(got, want) {
		t.Fatalf("got % x\nwant % x", got, want)
	}
	var out ContentHeader
	if err := DecodeContentHeader(want, &out); err != nil {
		t.Fatal(err)
	}
	if !out.Properties.Timestamp.Equal(h.Properties.Timestamp) || out.Properties.ContentType != "text/plain" ||
		out.Properties.DeliveryMode != 2 || out.Properties.ClusterID != "z" || out.BodySize != 5 {
		t.Errorf("decoded %+v", out)
	}
	// Decoding overwrites whatever h held.
	out.Properties.AppID = "stale"
	if err := DecodeContentHeader(unhex(t, "003c 0000 0000000000000000 0000"), &out); err != nil || !reflect.DeepEqual(out.Properties, Properties{}) {
		t.Errorf("not reset: %+v %v", out, err)
	}
}

func TestContentHeaderFlags(t *testing.T) {
	var h ContentHeader
	// Weight is ignored; an empty continuation word is accepted.
	if err := DecodeContentHeader(unhex(t, "003c 0007 0000000000000001 8001 0000 01 61"), &h); err != nil || h.Properties.ContentType != "a" {
		t.Errorf("continuation: %+v %v", h, err)
	}
	for name, hx := range map[string]string{
		"bit 1":              "003c 0000 0000000000000000 0002",
		"continuation flags": "003c 0000 0000000000000000 0001 8000 01 61",
		"missing word":       "003c 0000 0000000000000000 0001",
		"short":              "003c 0000 00000000",
	} {
		if err := DecodeContentHeader(unhex(t, hx), &h); !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %v, want ErrSyntax", name, err)
		}
	}
}

func TestPropertyPresence(t *testing.T) {
	// Zero values are not sent; an empty but non-nil Headers is.
	b := AppendContentHeader(nil, &ContentHeader{Properties: Properties{Headers: Table{}}})
	if want := unhex(t, "0000 0000 0000000000000000 2000 00000000"); !bytes.Equal(b, want) {
		t.Errorf("got % x", b)
	}
	b = AppendContentHeader(nil, &ContentHeader{})
	if len(b) != 14 || b[12] != 0 || b[13] != 0 {
		t.Errorf("empty properties: % x", b)
	}
}

func TestMemoSharesUnchangedValues(t *testing.T) {
	props := func(status string, corr string) []byte {
		return AppendContentHeader(nil, &ContentHeader{ClassID: ClassBasic, BodySize: 3, Properties: Properties{
			ContentType: "application/json", CorrelationID: corr, ReplyTo: "amq.rabbitmq.reply-to",
			Headers: Table{"x-rpc-status": status, "n": int64(7)},
		}})
	}
	var memo Memo
	var a, b, c ContentHeader
	pa := props("OK", "1")
	if err := DecodeContentHeaderMemo(pa, &a, &memo); err != nil {
		t.Fatal(err)
	}
	clear(pa) // the memo keeps no reference to the payload
	if err := DecodeContentHeaderMemo(props("OK", "2"), &b, &memo); err != nil {
		t.Fatal(err)
	}
	if reflect.ValueOf(a.Properties.Headers).UnsafePointer() != reflect.ValueOf(b.Properties.Headers).UnsafePointer() {
		t.Error("the same header table bytes decoded to a new map")
	}
	if a.Properties.CorrelationID != "1" || b.Properties.CorrelationID != "2" || b.Properties.ReplyTo != "amq.rabbitmq.reply-to" {
		t.Errorf("strings: %+v then %+v", a.Properties, b.Properties)
	}
	if err := DecodeContentHeaderMemo(props("INTERNAL", "3"), &c, &memo); err != nil {
		t.Fatal(err)
	}
	want := Table{"x-rpc-status": "INTERNAL", "n": int64(7)}
	if !reflect.DeepEqual(c.Properties.Headers, want) || b.Properties.Headers["x-rpc-status"] != "OK" {
		t.Errorf("changed table: got %v (previous %v)", c.Properties.Headers, b.Properties.Headers)
	}
	var plain ContentHeader
	if err := DecodeContentHeader(props("INTERNAL", "3"), &plain); err != nil || !reflect.DeepEqual(plain, c) {
		t.Errorf("memo decode %+v differs from plain %+v (%v)", c, plain, err)
	}
}

func TestWriterReusesHeaderTableEncoding(t *testing.T) {
	shared := Table{"x-rpc-status": "OK", "n": int64(7)}
	tables := []Table{shared, shared, {"x-rpc-status": "INTERNAL"}, nil, shared, {"x-rpc-status": "OK", "n": int64(7)}}
	var reused bytes.Buffer
	w := NewWriter(&reused)
	var want bytes.Buffer
	for i, tab := range tables {
		p := &Properties{CorrelationID: string(rune('a' + i)), Headers: tab}
		if err := w.WriteContent(1, ClassBasic, p, []byte("body"), 4096); err != nil {
			t.Fatal(err)
		}
		fresh := NewWriter(&want) // no memory of a previous table
		if err := fresh.WriteContent(1, ClassBasic, p, []byte("body"), 4096); err != nil {
			t.Fatal(err)
		}
		if err := fresh.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reused.Bytes(), want.Bytes()) {
		t.Fatalf("a writer reusing header encodings wrote\n% x\nwant\n% x", reused.Bytes(), want.Bytes())
	}
}
