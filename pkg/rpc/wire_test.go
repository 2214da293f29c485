package rpc

import (
	"math"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/pkg/rpc/internal/amqpc"
)

func TestSplitType(t *testing.T) {
	for typ, want := range map[string][2]string{
		"greeter.Greet":        {"greeter", "Greet"},
		"billing.invoices.New": {"billing.invoices", "New"},
		"greeter":              {"", ""},
		".Greet":               {"", ""},
		"greeter.":             {"", ""},
		"":                     {"", ""},
	} {
		s, m, ok := SplitType(typ)
		if s != want[0] || m != want[1] || ok != (want[0] != "") {
			t.Errorf("%q: %q %q %v", typ, s, m, ok)
		}
	}
}

// TestDeadlineHeaderTypes: amqp091-go, pika and amqplib put x-deadline in
// different field types; all read the same.
func TestDeadlineHeaderTypes(t *testing.T) {
	const ms = 1_765_000_000_123
	for _, v := range []any{int64(ms), float64(ms), "1765000000123", []byte("1765000000123"), uint64(ms)} {
		if got, ok := tableInt(v); !ok || got != ms {
			t.Errorf("%T: %d %v", v, got, ok)
		}
	}
	for _, v := range []any{int32(7), int16(7), int8(7), uint8(7), uint16(7), uint32(7), float32(7), 7} {
		if got, ok := tableInt(v); !ok || got != 7 {
			t.Errorf("%T: %d %v", v, got, ok)
		}
	}
	for _, v := range []any{1.5, math.Inf(1), "soon", uint64(math.MaxUint64), true, nil, amqp.Table{}} {
		if _, ok := tableInt(v); ok {
			t.Errorf("%T %v accepted", v, v)
		}
	}
}

func TestExpiration(t *testing.T) {
	now := time.Now()
	if e := expiration(now.Add(1500*time.Millisecond), now); e != "1500" {
		t.Fatal(e)
	}
	// Never 0 (RabbitMQ: deliver now or drop) and never negative.
	if e := expiration(now.Add(-time.Second), now); e != "1" {
		t.Fatal(e)
	}
}

func TestParseReply(t *testing.T) {
	c, msg := parseReply(withHeaders(amqp.Table{HeaderStatus: "NOT_FOUND", HeaderError: "gone"}))
	if c != NotFound || msg != "gone" {
		t.Fatal(c, msg)
	}
	c, msg = parseReply(withHeaders(amqp.Table{HeaderStatus: []byte("WEIRD")}))
	if c != Unknown || msg != `unknown status "WEIRD"` {
		t.Fatal(c, msg)
	}
	if c, _ := parseReply(&amqpc.Delivery{}); c != OK {
		t.Fatal(c)
	}
}

type out struct {
	A int `json:"a"`
}

// FuzzDecodeReply: whatever a responder sends back, the caller gets a
// value or an *Error, never a panic.
func FuzzDecodeReply(f *testing.F) {
	f.Add("OK", "", "application/json", []byte(`{"a":1}`))
	f.Add("NOT_FOUND", "x", "", []byte{})
	f.Add("", "", "application/protobuf", []byte{1, 2})
	f.Add("OK", "", "application/json;", []byte(`{"a":"x"}`))
	f.Fuzz(func(t *testing.T, st, msg, ct string, body []byte) {
		d := withHeaders(amqp.Table{HeaderStatus: st, HeaderError: msg})
		d.ContentType, d.Body = ct, body
		var o out
		err := decodeReply(d, jsonCodec{}, &o)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("%T %v", err, err)
			}
		}
	})
}

func withHeaders(h amqp.Table) *amqpc.Delivery {
	d := &amqpc.Delivery{}
	d.Headers = h
	return d
}
