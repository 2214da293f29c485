package wsconn

import (
	"bytes"
	"testing"
)

// FuzzReadFrames feeds arbitrary bytes, in two reads, to a server
// connection's message reader and to its stream reader: neither may
// panic, a message never exceeds the limit, and a text message is UTF-8.
func FuzzReadFrames(f *testing.F) {
	seeds := [][]byte{
		clientFrame(true, OpText, []byte("Hello")),
		append(clientFrame(false, OpText, []byte("Hel")), clientFrame(true, OpContinuation, []byte("lo"))...),
		append(clientFrame(true, OpPing, []byte("p")), clientFrame(true, OpBinary, bytes.Repeat([]byte{7}, 300))...),
		clientFrame(true, OpClose, closePayload(StatusNormalClosure, "bye")),
		clientFrame(true, OpBinary, bytes.Repeat([]byte{1}, 70000)),
		{0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}, // unmasked
		{0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4},
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		const limit = 1 << 16
		for _, stream := range []bool{false, true} {
			sc := &scriptConn{in: bytes.Clone(in), chunks: []int{int(cut) + 1}}
			c := newConn(sc, &Options{ReadLimit: limit}, "", nil)
			if stream {
				nc := c.NetConn(OpBinary, false)
				buf := make([]byte, 1000)
				total := 0
				for range 1000 {
					n, err := nc.Read(buf)
					total += n
					if err != nil {
						break
					}
				}
				if total > len(in) {
					t.Fatalf("read %d payload bytes from %d input bytes", total, len(in))
				}
				continue
			}
			for range 1000 {
				op, msg, err := c.ReadMessage()
				if err != nil {
					break
				}
				if len(msg) > limit {
					t.Fatalf("message of %d bytes beyond the limit", len(msg))
				}
				if op != OpText && op != OpBinary {
					t.Fatalf("data message with opcode %d", op)
				}
			}
		}
	})
}
