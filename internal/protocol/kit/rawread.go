package kit

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// RawReader reads from a plain socket in a caller's shallow frame. A
// connection's read loop runs deep (decoder, dispatch, the broker's calls),
// and a goroutine blocked there keeps the stack that depth grew to, since
// the collector shrinks a stack only while little of it is in use. A loop
// that returns to a shallow frame before it would block, and waits there
// with Read, lets the collector halve the stack of every idle connection.
//
// A RawReader is used by one goroutine at a time (the read loop).
type RawReader struct {
	rc syscall.RawConn
	// The state of one Read, kept here so that read, the func handed to
	// the socket, is bound once and a Read allocates nothing.
	bufs ReadBuffers
	n    int
	rerr error
	read func(fd uintptr) bool
}

// NewRawReader returns a RawReader for nc, or nil when nc is not a plain
// socket (TLS, WebSocket, a pipe): such a connection reads the usual way.
func NewRawReader(nc net.Conn) *RawReader {
	r := new(RawReader)
	if !r.Init(nc) {
		return nil
	}
	return r
}

// Init makes r, a field of the caller's connection (one allocation fewer
// per connection than NewRawReader), a RawReader for nc; false when nc is
// not a plain socket. r must not be copied afterwards.
func (r *RawReader) Init(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	*r = RawReader{rc: rc}
	r.read = r.readFD
	return true
}

// ReadBuffers lends a RawReader the buffer for one read. Buffer is called
// when the socket may have bytes; Release when it had none, so that a
// connection waiting for its next bytes holds no buffer.
type ReadBuffers interface {
	Buffer() []byte
	Release()
}

// Read waits until the socket is readable and reads once into a buffer
// from bufs, honouring the connection's read deadline as net.Conn.Read
// does. It returns io.EOF when the peer closed.
func (r *RawReader) Read(bufs ReadBuffers) (int, error) {
	r.bufs = bufs
	err := r.rc.Read(r.read)
	n, rerr := r.n, r.rerr
	r.bufs, r.rerr = nil, nil
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: rerr}
	}
	if n <= 0 {
		return 0, io.EOF
	}
	return n, nil
}

// readFD is one read attempt; false (nothing to read yet) makes the
// runtime wait for the socket to become readable and call it again.
func (r *RawReader) readFD(fd uintptr) bool {
	p := r.bufs.Buffer()
	for {
		r.n, r.rerr = syscall.Read(int(fd), p)
		if r.rerr != syscall.EINTR {
			break
		}
	}
	if r.rerr == syscall.EAGAIN {
		r.bufs.Release()
		return false
	}
	return true
}

// ErrDrained is what a read loop returns to its shallow caller when it has
// consumed everything read so far and the next read may block.
var ErrDrained = errors.New("read buffer drained")
