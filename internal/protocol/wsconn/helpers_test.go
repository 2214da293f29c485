package wsconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// scriptConn is a net.Conn that reads a script, split into reads of the
// given sizes, and records what is written.
type scriptConn struct {
	in     []byte
	chunks []int // sizes of successive reads (0: the rest)
	out    bytes.Buffer
	closed bool
}

func (s *scriptConn) Read(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	if len(s.in) == 0 {
		return 0, io.EOF
	}
	n := len(s.in)
	if len(s.chunks) > 0 {
		if s.chunks[0] > 0 {
			n = min(n, s.chunks[0])
		}
		s.chunks = s.chunks[1:]
	}
	n = copy(p, s.in[:n])
	s.in = s.in[n:]
	return n, nil
}

func (s *scriptConn) Write(p []byte) (int, error) {
	if s.closed {
		return 0, net.ErrClosed
	}
	return s.out.Write(p)
}
func (s *scriptConn) Close() error                     { s.closed = true; return nil }
func (s *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *scriptConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// clientFrame encodes a masked (client) frame.
func clientFrame(fin bool, op Opcode, payload []byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch n := len(payload); {
	case n <= 125:
		b = append(b, b0, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, b0, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= key[i&3]
	}
	return b
}

func newScriptConn(in []byte, chunks ...int) (*Conn, *scriptConn) {
	sc := &scriptConn{in: in, chunks: chunks}
	return newConn(sc, &Options{ReadLimit: 1 << 16}, "", nil), sc
}
