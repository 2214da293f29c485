package mqtt

import (
	"bytes"
	"testing"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// TestPubCacheSharesOneEncoding: the same message, topic, version and
// retain flag get the very bytes encoded the first time (equal to a fresh
// encode); any of those differing gets its own encoding.
func TestPubCacheSharesOneEncoding(t *testing.T) {
	var c pubCache
	m := &broker.Message{Body: []byte("tick")}
	enc := func(m *broker.Message, topic string, v byte, retain bool) []byte {
		return c.encode(m, &packet.Publish{Topic: topic, Payload: m.Body, Retain: retain}, v)
	}
	first := enc(m, "a/b", packet.V311, false)
	want := (&packet.Publish{Topic: "a/b", Payload: m.Body}).Encode(nil, packet.V311)
	if !bytes.Equal(first, want) {
		t.Fatalf("cached encoding %x, want %x", first, want)
	}
	if again := enc(m, "a/b", packet.V311, false); &again[0] != &first[0] {
		t.Fatal("the second subscriber of the same message did not get the cached bytes")
	}
	for name, b := range map[string][]byte{
		"another message": enc(&broker.Message{Body: []byte("tock")}, "a/b", packet.V311, false),
		"another topic":   enc(m, "a/c", packet.V311, false),
		"another version": enc(m, "a/b", packet.V5, false),
		"retained":        enc(m, "a/b", packet.V311, true),
	} {
		if bytes.Equal(b, first) {
			t.Errorf("%s: got the first message's encoding", name)
		}
	}
	if b := enc(m, "a/b", packet.V5, false); !bytes.Equal(b, (&packet.Publish{Topic: "a/b", Payload: m.Body}).Encode(nil, packet.V5)) {
		t.Fatalf("v5 encoding %x", b)
	}
}
