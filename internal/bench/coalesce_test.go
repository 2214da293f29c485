package bench

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// Writes from several goroutines arrive whole and, per writer, in order;
// after Close a write fails and the flusher is gone.
func TestCoalescingConnDeliversEveryWriteInOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- b
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	w := newCoalescingConn(raw)
	var want bytes.Buffer
	for i := range 20000 {
		// Bigger than coalesceLimit in total, so writers wait for room too.
		p := bytes.Repeat([]byte{byte(i)}, 1+i%200)
		want.Write(p)
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("received %d bytes, want %d (or different bytes)", len(b), want.Len())
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, errConnClosed) {
		t.Fatalf("write after close: %v, want errConnClosed", err)
	}
}

// A failed socket write fails the writes after it.
func TestCoalescingConnReportsSocketErrors(t *testing.T) {
	a, b := net.Pipe()
	w := newCoalescingConn(a)
	defer w.Close()
	b.Close()
	var err error
	for i := 0; err == nil && i < 1e6; i++ {
		_, err = w.Write([]byte("hello"))
	}
	if err == nil || errors.Is(err, errConnClosed) {
		t.Fatalf("writes to a closed peer: %v, want the socket's error", err)
	}
}
