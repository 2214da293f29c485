package wsconn

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// tcpPair is a server Conn over a real TCP socket and the client's end.
func tcpPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := newConn(sv, &Options{WriteTimeout: 10 * time.Second}, "", nil)
	t.Cleanup(func() { c.CloseNow(); cl.Close() })
	return c, cl
}

// readServerFrame reads one unmasked frame: its opcode and payload.
func readServerFrame(t *testing.T, r io.Reader) (Opcode, []byte) {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(r, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(r, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		t.Fatal(err)
	}
	return Opcode(h[0] & 0x0f), p
}

func TestTryWriteMessage(t *testing.T) {
	c, cl := tcpPair(t)
	ok, err := c.TryWriteMessage(OpText, []byte(`{"a":`), []byte(`1}`))
	if !ok || err != nil {
		t.Fatalf("TryWriteMessage: %v %v", ok, err)
	}
	if op, p := readServerFrame(t, cl); op != OpText || string(p) != `{"a":1}` {
		t.Fatalf("read %v %q", op, p)
	}
	// A socket the peer does not read fills up: the rest of a message is
	// written by the connection's goroutine, and a WriteBatch waits for it
	// (nothing lands in the middle of the message).
	big := bytes.Repeat([]byte("x"), 8<<20)
	if ok, err := c.TryWriteMessage(OpBinary, []byte("head"), big); !ok || err != nil {
		t.Fatalf("big TryWriteMessage: %v %v", ok, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.WriteMessage(OpText, []byte("after")) }()
	if op, p := readServerFrame(t, cl); op != OpBinary || len(p) != 4+len(big) || string(p[:4]) != "head" || !bytes.Equal(p[4:], big) {
		t.Fatalf("big message: op %v, %d bytes", op, len(p))
	}
	if op, p := readServerFrame(t, cl); op != OpText || string(p) != "after" {
		t.Fatalf("after: %v %q", op, p)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A write deadline that passed (set by a blocking write) does not
	// stop it.
	c.writeMu.Lock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(-time.Second))
	c.writeMu.Unlock()
	if ok, err := c.TryWriteMessage(OpText, nil, []byte("late")); !ok || err != nil {
		t.Fatalf("after the deadline: %v %v", ok, err)
	}
	if op, p := readServerFrame(t, cl); op != OpText || string(p) != "late" {
		t.Fatalf("late: %v %q", op, p)
	}
	// While another write holds the lock, it does not try.
	c.writeMu.Lock()
	if ok, _ := c.TryWriteMessage(OpText, nil, []byte("x")); ok {
		t.Fatal("wrote while another write was in progress")
	}
	c.writeMu.Unlock()
	// Not a TCP socket: it does not try.
	sc, _ := newScriptConn(nil)
	if ok, _ := sc.TryWriteMessage(OpText, nil, []byte("x")); ok {
		t.Fatal("wrote to a non-TCP connection")
	}
	// After the close frame, nothing.
	c.CloseNow()
	c.writeMu.Lock()
	c.closeSent = true
	c.writeMu.Unlock()
	if ok, _ := c.TryWriteMessage(OpText, nil, []byte("x")); ok {
		t.Fatal("wrote after the close frame")
	}
}
