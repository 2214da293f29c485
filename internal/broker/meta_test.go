package broker

import (
	"reflect"
	"testing"
	"time"
)

func TestMetaRoundTrip(t *testing.T) {
	ts := time.Unix(1700000000, 0).UTC()
	m := &Message{Exchange: "ex", RoutingKey: "a.b", Properties: Properties{
		ContentType: "text/plain", ContentEncoding: "gzip", DeliveryMode: 2, Priority: 7,
		CorrelationID: "c", ReplyTo: "r", Expiration: "60000", MessageID: "m", Timestamp: ts,
		Type: "t", UserID: "u", AppID: "a", ClusterID: "cl",
		Headers: Table{
			"nil": nil, "b": true, "i8": int8(-3), "u8": uint8(3), "i16": int16(-300), "u16": uint16(300),
			"i32": int32(-70000), "u32": uint32(70000), "i64": int64(-1 << 40), "u64": uint64(1 << 40), "int": 5,
			"f32": float32(1.5), "f64": 2.25, "s": "str", "x": []byte{0, 1, 2}, "t": ts,
			"arr":    []any{"a", int32(1), Table{"deep": "yes"}},
			"nested": Table{"k": "v", "n": Table{"x": int64(1)}},
		},
	}}
	var got Message
	if err := decodeMeta(encodeMeta(m), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Properties, m.Properties) || got.Exchange != m.Exchange || got.RoutingKey != m.RoutingKey {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, *m)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(&Message{Exchange: "e", RoutingKey: "k", Properties: Properties{Headers: Table{"a": []any{Table{"b": int32(1)}}}}}))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if decodeMeta(b, &m) == nil {
			var again Message
			if err := decodeMeta(encodeMeta(&m), &again); err != nil {
				t.Fatalf("re-encoded metadata does not decode: %v", err)
			}
		}
	})
}
