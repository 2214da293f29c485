package mqtt

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

func ups(kv ...string) []packet.UserProperty {
	var out []packet.UserProperty
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, packet.UserProperty{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// TestUserPropertiesToHeaders: order and repeats survive the trip through
// AMQP headers [MQTT-3.3.2-18], and the headers read naturally in AMQP.
func TestUserPropertiesToHeaders(t *testing.T) {
	in := ups("k1", "v1", "k1", "v2", "trace", "abc")
	h := broker.Table{hdrPublishQoS: byte(1)}
	putUserProperties(h, in)
	want := broker.Table{
		hdrPublishQoS:     byte(1),
		"k1":              []any{"v1", "v2"},
		"trace":           "abc",
		hdrUserProperties: []any{[]any{"k1", "v1"}, []any{"k1", "v2"}, []any{"trace", "abc"}},
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("headers %#v\nwant %#v", h, want)
	}
	if got := userProperties(h); !reflect.DeepEqual(got, in) {
		t.Fatalf("back to MQTT: %v, want %v", got, in)
	}
	// One property needs no list.
	one := broker.Table{}
	putUserProperties(one, ups("unit", "celsius"))
	if !reflect.DeepEqual(one, broker.Table{"unit": "celsius"}) {
		t.Fatalf("single property: %#v", one)
	}
}

// TestUserPropertiesFromAMQP: headers set by AMQP applications become
// properties (an array one per element), after the list's, in name order;
// a list that no longer agrees with its headers is not used.
func TestUserPropertiesFromAMQP(t *testing.T) {
	h := broker.Table{"b": int32(7), "a": []any{"x", []byte("y")}, "skip": broker.Table{"t": "no"}, hdrRetain: true}
	if got, want := userProperties(h), ups("a", "x", "a", "y", "b", "7"); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	h = broker.Table{}
	putUserProperties(h, ups("z", "1", "a", "2", "extra", "3"))
	h["extra"] = "changed by an AMQP forwarder"
	if got, want := userProperties(h), ups("a", "2", "extra", "changed by an AMQP forwarder", "z", "1"); !reflect.DeepEqual(got, want) {
		t.Fatalf("stale list: got %v, want %v", got, want)
	}
	h = broker.Table{}
	putUserProperties(h, ups("z", "1", "a", "2"))
	h["new"] = "added"
	if got, want := userProperties(h), ups("z", "1", "a", "2", "new", "added"); !reflect.DeepEqual(got, want) {
		t.Fatalf("added header: got %v, want %v", got, want)
	}
	// Names of the adapter's own headers travel in the list only.
	h = broker.Table{hdrRetain: true}
	putUserProperties(h, ups(hdrRetain, "user's"))
	if h[hdrRetain] != true {
		t.Fatalf("user property overwrote %s: %#v", hdrRetain, h)
	}
	if got, want := userProperties(h), ups(hdrRetain, "user's"); !reflect.DeepEqual(got, want) {
		t.Fatalf("reserved name: got %v, want %v", got, want)
	}
}

// FuzzUserProperties: any list of properties comes back as it went in, and
// any (malformed) list header is survived.
func FuzzUserProperties(f *testing.F) {
	f.Add([]byte("k1\x00v1\x00k1\x00v2\x00trace\x00abc"))
	f.Add([]byte("x-mqtt-retain\x00a\x00x-mqtt-user-properties\x00b"))
	f.Add([]byte("\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := bytes.Split(data, []byte{0})
		var in []packet.UserProperty
		for i := 0; i+1 < len(parts); i += 2 {
			in = append(in, packet.UserProperty{Key: string(parts[i]), Value: string(parts[i+1])})
		}
		h := broker.Table{hdrPublishQoS: byte(0)}
		putUserProperties(h, in)
		got := userProperties(h)
		if len(in) == 0 {
			if len(got) != 0 {
				t.Fatalf("no properties in, %v out", got)
			}
		} else if !reflect.DeepEqual(got, in) {
			t.Fatalf("got %v, want %v", got, in)
		}
		// The same bytes as a hostile list header.
		var list []any
		for i, p := range parts {
			switch i % 3 {
			case 0:
				list = append(list, []any{string(p), p})
			case 1:
				list = append(list, []any{string(p)})
			default:
				list = append(list, string(p))
			}
		}
		userProperties(broker.Table{hdrUserProperties: list, string(data): []any{data, nil}})
	})
}
