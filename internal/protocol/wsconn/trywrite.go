package wsconn

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// TryWriteMessage writes a message whose payload is head followed by tail
// without blocking, for a caller that must not wait (a queue delivering
// under its lock): one non-blocking write to the socket from the calling
// goroutine, with no goroutine started or woken when the socket takes it
// all, which an idle subscriber's socket does.
//
// It reports false, having written nothing, when it cannot try: the
// connection is not a plain TCP socket (TLS), another write is in
// progress, or the close frame went out; the caller then queues the
// message for its writer (WriteBatch) as usual. When the socket takes
// only part of the message, a goroutine of the connection writes the rest
// (with the write timeout) and holds the write lock until then, so that
// nothing else is written into the middle of the message. A write error
// closes the connection (CloseNow) and is returned; the message then
// counts as taken, as with a failed WriteBatch.
func (c *Conn) TryWriteMessage(op Opcode, head, tail []byte) (bool, error) {
	if !c.writeMu.TryLock() {
		return false, nil
	}
	w := c.rawWriter()
	if c.closeSent || w == nil {
		c.writeMu.Unlock()
		return false, nil
	}
	b := c.pool.GetBatch()
	b.buf = appendHeader(b.buf[:0], true, op, len(head)+len(tail))
	b.buf = append(b.buf, head...)
	b.buf = append(b.buf, tail...)
	w.buf, w.n, w.err = b.buf, 0, nil
	err := w.raw.Write(w.write)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline a blocking write set has passed (this write does
		// not block and needs none): clear it and try again. The next
		// WriteBatch sets its own.
		_ = c.nc.SetWriteDeadline(time.Time{})
		c.deadlineSet = time.Time{}
		err = w.raw.Write(w.write)
	}
	n, werr := w.n, w.err
	w.buf = nil
	if err != nil || werr != nil {
		c.writeMu.Unlock()
		c.pool.PutBatch(b)
		if werr == nil {
			// Not tried (the socket is closing): the writer sees for
			// itself.
			return false, nil
		}
		_ = c.CloseNow()
		return true, werr
	}
	if n == len(b.buf) {
		c.writeMu.Unlock()
		c.pool.PutBatch(b)
		return true, nil
	}
	// The socket is full: the rest goes out from a goroutine that holds
	// the write lock until it is written.
	rest := b.buf[n:]
	go c.finishWrite(b, rest)
	return true, nil
}

// finishWrite writes what TryWriteMessage could not, then releases the
// write lock it holds.
func (c *Conn) finishWrite(b *Batch, rest []byte) {
	defer c.writeMu.Unlock()
	defer c.pool.PutBatch(b)
	t := c.writeTimeout
	if t == 0 {
		t = controlWriteTimeout
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(t))
	c.deadlineSet = time.Time{} // WriteBatch sets its own again
	if _, err := c.nc.Write(rest); err != nil {
		_ = c.CloseNow()
	}
}

// rawWriter holds a plain TCP connection's non-blocking write.
type rawWriter struct {
	raw   syscall.RawConn
	write func(fd uintptr) bool // writeNow, bound once: a write allocates no closure
	buf   []byte
	n     int
	err   error
}

// rawWriter is the connection's rawWriter, made by the first call; nil
// for a connection that is not plain TCP. writeMu is held.
func (c *Conn) rawWriter() *rawWriter {
	if c.tw == nil {
		c.tw = &rawWriter{} // no raw: not plain TCP
		if tc, ok := c.nc.(*net.TCPConn); ok {
			if rc, err := tc.SyscallConn(); err == nil {
				w := &rawWriter{raw: rc}
				w.write = w.writeNow
				c.tw = w
			}
		}
	}
	if c.tw.raw == nil {
		return nil
	}
	return c.tw
}

// writeNow is TryWriteMessage's one non-blocking write; the connection's
// writeMu is held.
func (w *rawWriter) writeNow(fd uintptr) bool {
	n, err := syscall.Write(int(fd), w.buf)
	switch {
	case err == nil:
		w.n = n
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		// Nothing taken: finishWrite waits for room.
	default:
		w.err = err
	}
	return true
}
