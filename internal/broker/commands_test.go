package broker

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func sampleCommands() []Command {
	args := Table{"x-message-ttl": int32(60000), "x-max-priority": uint8(5), "x-dead-letter-exchange": "dlx",
		"flag": true, "ratio": 0.5, "big": int64(-1 << 40), "raw": []byte{0, 1, 2},
		"at": time.Unix(1_700_000_000, 0).UTC(), "list": []any{"a", int16(-2), nil}, "nested": Table{"k": uint32(7)}}
	return []Command{
		CreateVHost{VHost: "orders"},
		DeleteVHost{VHost: "orders"},
		DeclareExchange{VHost: "/", Name: "events", Kind: KindTopic, Durable: true, Args: Table{"alternate-exchange": "ae"}},
		DeclareExchange{VHost: "/", Name: "plain", Kind: KindFanout},
		DeleteExchange{VHost: "/", Name: "events", IfUnused: true},
		DeclareQueue{VHost: "/", Name: "q", Durable: true, Args: args},
		DeclareQueue{VHost: "/", Name: "amq.gen-x", Exclusive: true, AutoDelete: true, Owner: 42, Args: Table{}},
		DeleteQueue{VHost: "/", Name: "q", Owner: 3, IfUnused: true, IfEmpty: true},
		PurgeQueue{VHost: "/", Name: "q"},
		Bind{VHost: "/", Source: "amq.topic", Destination: "q", RoutingKey: "a.*", Args: Table{"x-match": "any"}},
		Bind{VHost: "/", Source: "events", Destination: "plain", ToExchange: true, RoutingKey: "#"},
		Unbind{VHost: "/", Source: "amq.topic", Destination: "q", RoutingKey: "a.*"},
		PutPolicy{VHost: "/", Name: "ttl", Pattern: "^q", ApplyTo: "queues", Priority: 2, Definition: Table{"message-ttl": int64(1000)}},
		DeletePolicy{VHost: "/", Name: "ttl"},
	}
}

// TestCommandEncodingRoundTrip: every command decodes to what was encoded,
// table values keeping their types.
func TestCommandEncodingRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %s:\n got %#v\nwant %#v", b, got, c)
		}
	}
}

func TestDecodeCommandRefuses(t *testing.T) {
	for _, in := range []string{
		``, `{}`, `[]`, `{"type":"queue.declare"}`, `{"type":"nope","command":{}}`,
		`{"type":"queue.declare","command":{"name":"q","extra":1}}`,
		`{"type":"queue.declare","command":{"name":"q","args":"!!"}}`,
		`{"type":"queue.declare","command":{"name":"q","args":"AgE="}}`,
		`{"type":"vhost.create","command":{"vhost":"a"}} {}`,
	} {
		if c, err := DecodeCommand([]byte(in)); err == nil {
			t.Errorf("%q decoded to %#v", in, c)
		}
	}
}

// TestApplyReplaysDefinitions: the commands the exported methods apply,
// replayed through Apply on a fresh broker, define the same things.
func TestApplyReplaysDefinitions(t *testing.T) {
	cmds := []Command{
		CreateVHost{VHost: "shop"},
		DeclareExchange{VHost: "shop", Name: "events", Kind: KindTopic, Durable: true},
		DeclareQueue{VHost: "shop", Name: "orders", Durable: true, Args: Table{"x-queue-type": "quorum"}},
		DeclareQueue{VHost: "shop", Name: "audit", Durable: true},
		Bind{VHost: "shop", Source: "events", Destination: "orders", RoutingKey: "order.*"},
		Bind{VHost: "shop", Source: "events", Destination: "audit", RoutingKey: "#"},
		Unbind{VHost: "shop", Source: "events", Destination: "audit", RoutingKey: "#"},
		PutPolicy{VHost: "shop", Name: "cap", Pattern: "^audit$", Definition: Table{"max-length": int64(10)}},
	}
	direct := New(Options{})
	defer direct.Close()
	v := direct.AddVHost("shop")
	must(t, func() error {
		_, err := v.DeclareExchange("events", ExchangeOptions{Kind: KindTopic, Durable: true})
		return err
	}())
	must(t, func() error {
		_, err := v.DeclareQueue("orders", QueueOptions{Durable: true, Args: Table{"x-queue-type": "quorum"}})
		return err
	}())
	must(t, func() error { _, err := v.DeclareQueue("audit", QueueOptions{Durable: true}); return err }())
	must(t, v.BindQueue("orders", "events", "order.*", nil, 0))
	must(t, v.BindQueue("audit", "events", "#", nil, 0))
	must(t, v.UnbindQueue("audit", "events", "#", nil, 0))
	must(t, v.PutPolicy(Policy{Name: "cap", Pattern: "^audit$", Definition: Table{"max-length": int64(10)}}))

	replayed := New(Options{})
	defer replayed.Close()
	for _, c := range cmds {
		b, err := EncodeCommand(c)
		must(t, err)
		dc, err := DecodeCommand(b)
		must(t, err)
		if _, err := replayed.Apply(dc); err != nil {
			t.Fatalf("apply %s: %v", b, err)
		}
	}
	want, got := direct.ExportDefinitions(true), replayed.ExportDefinitions(true)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("replayed definitions differ:\n got %+v\nwant %+v", got, want)
	}
	if _, err := replayed.Apply(DeclareQueue{VHost: "nowhere", Name: "q"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("declare in a missing vhost: %v", err)
	}
	q, _ := replayed.VHost("shop").Queue("orders")
	if q.Type() != QueueTypeQuorum {
		t.Fatalf("replayed queue type %q", q.Type())
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"queue.declare","command":{"vhost":"/","name":"q","args":"AA=="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			return
		}
		again, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", c, err)
		}
		// %#v, not DeepEqual: a NaN in a table is not equal to itself.
		c2, err := DecodeCommand(again)
		if err != nil || fmt.Sprintf("%#v", c) != fmt.Sprintf("%#v", c2) {
			t.Fatalf("re-encoding %s is not stable: %v\n%#v\n%#v", again, err, c, c2)
		}
	})
}
