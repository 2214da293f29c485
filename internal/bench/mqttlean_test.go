package bench

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

func TestLeanSubscribersByScheme(t *testing.T) {
	for _, tc := range []struct {
		url  string
		paho bool
		want bool
	}{
		{"mqtt://h:1883", false, true},
		{"tcp://h:1883", false, true},
		{"mqtt://h:1883", true, false},
		{"mqtts://h:8883", false, false},
		{"ws://h:15675/mqtt", false, false},
	} {
		if got := leanSubscribers(Config{URL: tc.url, PahoSubscribers: tc.paho}); got != tc.want {
			t.Errorf("%s (paho %v): lean %v, want %v", tc.url, tc.paho, got, tc.want)
		}
	}
}

// The lean reader's PUBLISH parsing agrees with the broker's decoder.
func TestLeanPublishMatchesDecoder(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 300) // a two-byte remaining length
	for _, p := range []*packet.Publish{
		{Topic: "a/b", Payload: []byte("hello")},
		{Topic: "a/b", QoS: 1, PacketID: 513, Payload: big, Dup: true},
		{Topic: "", QoS: 1, PacketID: 7},
		{Topic: string(bytes.Repeat([]byte("t"), 260)), QoS: 1, PacketID: 65535, Payload: []byte{1}},
	} {
		wire := p.Encode(nil, packet.V311)
		first, size, err := leanHeader(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil {
			t.Fatal(err)
		}
		body := wire[len(wire)-size:]
		payload, id, ok := leanPublish(first, body)
		if !ok || !bytes.Equal(payload, p.Payload) || id != p.PacketID || (first&0x08 != 0) != p.Dup {
			t.Errorf("%+v: got payload %d bytes, id %d, ok %v, dup %v", p, len(payload), id, ok, first&0x08 != 0)
		}
	}
}

func FuzzLeanPublish(f *testing.F) {
	f.Add((&packet.Publish{Topic: "a/b", QoS: 1, PacketID: 9, Payload: []byte("x")}).Encode(nil, packet.V311))
	f.Add((&packet.Publish{Topic: "t", Payload: []byte("y")}).Encode(nil, packet.V311))
	f.Add([]byte{0x32, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, wire []byte) {
		first, size, err := leanHeader(bufio.NewReader(bytes.NewReader(wire)))
		if err != nil || size > len(wire) {
			return
		}
		body := wire[len(wire)-size:]
		payload, id, ok := leanPublish(first, body)
		want, derr := packet.Decode(first, append([]byte(nil), body...), packet.V311)
		if !ok {
			return
		}
		if p, isPub := want.(*packet.Publish); derr == nil && isPub {
			if !bytes.Equal(payload, p.Payload) || id != p.PacketID {
				t.Fatalf("lean: payload %x id %d; decoder: payload %x id %d", payload, id, p.Payload, p.PacketID)
			}
		}
	})
}
