package kit

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// testBufs counts how often a RawReader took and gave back its buffer.
type testBufs struct {
	buf            []byte
	taken, release int
}

func (b *testBufs) Buffer() []byte { b.taken++; return b.buf }
func (b *testBufs) Release()       { b.release++ }

func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

func TestRawReaderReads(t *testing.T) {
	server, client := tcpPair(t)
	rr := NewRawReader(server)
	if rr == nil {
		t.Fatal("no RawReader for a TCP connection")
	}
	bufs := &testBufs{buf: make([]byte, 16)}
	go client.Write([]byte("hello"))
	n, err := rr.Read(bufs)
	if err != nil || string(bufs.buf[:n]) != "hello" {
		t.Fatalf("read %q, %v", bufs.buf[:n], err)
	}
	// Every attempt that found nothing gave the buffer back; the last one
	// kept it.
	if bufs.taken != bufs.release+1 {
		t.Fatalf("buffer taken %d times, released %d", bufs.taken, bufs.release)
	}
}

func TestRawReaderDeadlineAndEOF(t *testing.T) {
	server, client := tcpPair(t)
	rr := NewRawReader(server)
	bufs := &testBufs{buf: make([]byte, 16)}
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := rr.Read(bufs)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past the deadline: %v, want a timeout", err)
	}
	// Waiting, the reader holds no buffer.
	if bufs.taken == 0 || bufs.taken != bufs.release {
		t.Fatalf("waiting: buffer taken %d times, released %d", bufs.taken, bufs.release)
	}
	server.SetReadDeadline(time.Time{})
	client.Close()
	if _, err := rr.Read(bufs); err != io.EOF {
		t.Fatalf("after the peer closed: %v, want io.EOF", err)
	}
}

func TestRawReaderOnlyForSockets(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	if NewRawReader(c1) != nil {
		t.Fatal("a pipe got a RawReader")
	}
}
