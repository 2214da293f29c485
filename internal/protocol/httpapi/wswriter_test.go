package httpapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/broker"
)

// The shared encoding of a broadcast must give each socket the frame the
// per-socket encoding gave: same fields, same values.
func TestSharedEncodingMatchesFrame(t *testing.T) {
	msgs := []*broker.Message{
		{Exchange: "amq.topic", RoutingKey: "room.1", Body: []byte(`hello "<world>" & é`)},
		{Exchange: "ex", RoutingKey: "k", Body: []byte{0, 1, 2, 0xff}, Properties: broker.Properties{
			ContentType: "application/octet-stream", DeliveryMode: 2, Priority: 3, CorrelationID: "c",
			ReplyTo: "r", MessageID: "m", Timestamp: time.Unix(1767225600, 0), Type: "t",
			Headers: broker.Table{"a": "b", "n": int32(7)}}},
		{Exchange: "", RoutingKey: "q", Body: bytes.Repeat([]byte("x"), 2000)},
	}
	s := &Server{}
	ws := &wsSession{s: s}
	x := &sub{id: `s"1\u2028`}
	for _, m := range msgs {
		for _, redelivered := range []bool{false, true} {
			it := outItem{sub: x, tag: 42, d: broker.Delivery{Message: m, Redelivered: redelivered}}
			want := newMessageJSON(&it.d)
			want.Op, want.Sub, want.Tag = "message", x.id, it.tag
			var wantMap map[string]any
			if err := json.Unmarshal(mustJSON(want), &wantMap); err != nil {
				t.Fatal(err)
			}
			for range 2 { // encoded, then from the cache
				_, p := ws.encodeItem(nil, &it)
				frame := append(append([]byte(nil), p.prefix...), p.shared...)
				var got map[string]any
				if err := json.Unmarshal(frame, &got); err != nil {
					t.Fatalf("frame %s: %v", frame, err)
				}
				if !reflect.DeepEqual(got, wantMap) {
					t.Fatalf("shared frame\n%s\nwant\n%s", frame, mustJSON(want))
				}
			}
		}
	}
	if n := len(s.encCache.m); n != 2*len(msgs) {
		t.Errorf("cache holds %d encodings, want %d", n, 2*len(msgs))
	}
}

// The cache is bounded in entries.
func TestEncCacheBounded(t *testing.T) {
	var c encCache
	for i := range 3 * maxEncEntries {
		m := &broker.Message{Exchange: "e", RoutingKey: "k", Body: []byte{byte(i)}}
		if _, ok := c.tail(&broker.Delivery{Message: m}); !ok {
			t.Fatal("not cached")
		}
		if len(c.m) > maxEncEntries {
			t.Fatalf("%d entries", len(c.m))
		}
	}
	big := &broker.Message{Body: make([]byte, maxEncBody+1)}
	if _, ok := c.tail(&broker.Delivery{Message: big}); ok {
		t.Fatal("a large body was cached")
	}
}
