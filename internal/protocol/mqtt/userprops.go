package mqtt

import (
	"fmt"
	"slices"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// MQTT 5 user properties are an ordered list of name/value pairs in which a
// name may repeat, and a server must keep their order when it forwards a
// message [MQTT-3.3.2-18]; AMQP headers are a table with unique names.
// They map onto headers without loss:
//
//   - each name becomes a header: its value as a string, or, when the name
//     repeats, an array of its values in order (k1 = ["v1", "v2"]);
//   - when there are two or more properties, the header
//     x-mqtt-user-properties also holds the whole list in order, as an
//     array of [name, value] arrays ([["k1","v1"], ["k1","v2"],
//     ["trace","abc"]]), since the table cannot say how names interleave.
//
// At delivery to an MQTT 5 client the list is used as long as it agrees
// with the per-name headers (an AMQP application that forwards the message
// with a header changed has its change delivered, not the stale list); any
// other header with a string, number or boolean value becomes one property,
// an array of them one property per element, after the list's, in name
// order. Names that collide with the adapter's own x-mqtt-* headers travel
// only in the list.
const hdrUserProperties = "x-mqtt-user-properties"

// reservedHeader reports whether a header is the adapter's own, never a
// user property of its own accord.
func reservedHeader(k string) bool {
	switch k {
	case hdrPublishQoS, hdrRetain, hdrPublisher, hdrPayloadFormat, hdrResponseTopic, hdrUserProperties:
		return true
	}
	return false
}

// putUserProperties adds an inbound PUBLISH's user properties to h.
func putUserProperties(h broker.Table, ups []packet.UserProperty) {
	if len(ups) == 0 {
		return
	}
	for _, u := range ups {
		if reservedHeader(u.Key) {
			continue
		}
		switch prev := h[u.Key].(type) {
		case nil:
			h[u.Key] = u.Value
		case string:
			h[u.Key] = []any{prev, u.Value}
		case []any:
			h[u.Key] = append(prev, u.Value)
		}
	}
	if len(ups) >= 2 || reservedHeader(ups[0].Key) {
		list := make([]any, len(ups))
		for i, u := range ups {
			list[i] = []any{u.Key, u.Value}
		}
		h[hdrUserProperties] = list
	}
}

// userProperties returns the user properties a delivery of a message with
// headers h carries to an MQTT 5 client.
func userProperties(h broker.Table) []packet.UserProperty {
	var out []packet.UserProperty
	listed := orderedUserProperties(h)
	if listed != nil {
		out = listed
	}
	var keys []string
	for k := range h {
		if reservedHeader(k) {
			continue
		}
		if listed != nil && slices.ContainsFunc(listed, func(u packet.UserProperty) bool { return u.Key == k }) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys) // a table has no order: give a stable one
	for _, k := range keys {
		switch x := h[k].(type) {
		case []any:
			for _, e := range x {
				if s, ok := scalarString(e); ok {
					out = append(out, packet.UserProperty{Key: k, Value: s})
				}
			}
		default:
			if s, ok := scalarString(x); ok {
				out = append(out, packet.UserProperty{Key: k, Value: s})
			}
		}
	}
	return out
}

// orderedUserProperties decodes the x-mqtt-user-properties list if it is
// well formed and agrees with the per-name headers; otherwise nil.
func orderedUserProperties(h broker.Table) []packet.UserProperty {
	raw, ok := h[hdrUserProperties].([]any)
	if !ok || len(raw) == 0 {
		return nil
	}
	out := make([]packet.UserProperty, 0, len(raw))
	values := make(map[string][]string, len(raw))
	for _, e := range raw {
		pair, ok := e.([]any)
		if !ok || len(pair) != 2 {
			return nil
		}
		k, ok1 := textOf(pair[0])
		v, ok2 := textOf(pair[1])
		if !ok1 || !ok2 {
			return nil
		}
		out = append(out, packet.UserProperty{Key: k, Value: v})
		if !reservedHeader(k) {
			values[k] = append(values[k], v)
		}
	}
	for k, vs := range values {
		if !headerHolds(h[k], vs) {
			return nil
		}
	}
	return out
}

// headerHolds reports whether header value v is exactly vs, as
// putUserProperties writes it.
func headerHolds(v any, vs []string) bool {
	if len(vs) == 1 {
		s, ok := textOf(v)
		return ok && s == vs[0]
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != len(vs) {
		return false
	}
	for i, e := range arr {
		if s, ok := textOf(e); !ok || s != vs[i] {
			return false
		}
	}
	return true
}

// textOf accepts the two forms a string takes in a header (an AMQP
// long string may arrive as bytes).
func textOf(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// scalarString renders a header value that has a user property form.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	case bool, float32, float64, int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), true
	}
	return "", false
}
