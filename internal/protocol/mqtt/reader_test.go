package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// chunked returns its data in reads of at most n bytes, so the reader's
// buffer switching and partial headers are exercised.
type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// readAll decodes packets until an error. EOF and ErrUnexpectedEOF are
// one outcome: packet.Read says EOF for a stream cut right after a first
// byte, the reader says unexpected EOF (both end the connection).
func readAll(next func() (packet.Packet, error)) ([]packet.Packet, error) {
	var out []packet.Packet
	for {
		p, err := next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return out, err
		}
		if a, ok := p.(*packet.Ack); ok {
			c := *a // the reader's own Ack is overwritten by its next Read
			p = &c
		}
		out = append(out, p)
	}
}

// FuzzReader checks the connection's framing reader against packet.Read on
// the same bytes, whatever the read sizes.
func FuzzReader(f *testing.F) {
	pub := (&packet.Publish{Topic: "a/b", QoS: 1, PacketID: 7, Payload: bytes.Repeat([]byte("x"), 300)}).Encode(nil, packet.V311)
	ack := (&packet.Ack{Kind: packet.PUBACK, PacketID: 9}).Encode(nil, packet.V311)
	ping := (&packet.Pingreq{}).Encode(nil, packet.V311)
	seed := append(append(append([]byte{}, pub...), bytes.Repeat(ack, 100)...), ping...)
	f.Add(seed, uint16(1))
	f.Add(seed, uint16(3000))
	f.Add(ack, uint16(2))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, uint16(4)) // varint too long
	f.Add([]byte{0x40, 0x02, 0x00}, uint16(1))                   // cut short
	f.Add([]byte("0"), uint16(3067))                             // cut after the first byte
	f.Fuzz(func(t *testing.T, data []byte, chunk uint16) {
		const maxSize = 1 << 12
		br := bufio.NewReader(bytes.NewReader(data))
		want, werr := readAll(func() (packet.Packet, error) { return packet.Read(br, packet.V311, maxSize) })
		var pool readBufPool
		rd := newReader(&chunked{data: data, n: int(chunk)%9000 + 1}, &pool)
		got, gerr := readAll(func() (packet.Packet, error) { return rd.Read(packet.V311, maxSize) })
		rd.Release()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("packets differ:\n got %#v\nwant %#v", got, want)
		}
		if (gerr == nil) != (werr == nil) || (gerr == io.EOF) != (werr == io.EOF) {
			t.Fatalf("errors differ: got %v, want %v", gerr, werr)
		}
	})
}
