// Package wsconn is Herald's server side of RFC 6455 WebSocket, shared by
// /ws (Herald's JSON protocol), /mqtt and /stomp.
//
// It exists for what a push server pays per idle connection: a Conn holds
// no buffer while it waits. A read first waits with a 64-byte array of
// the Conn's own (a ping, a pong, an ack or an MQTT PINGREQ fits in it);
// only a longer burst borrows a 4 KiB buffer from a Pool, which goes back
// as soon as the bytes are consumed. Writes borrow a Batch that holds the
// frame headers and small payloads and points at large ones, so that a
// burst of messages (with a payload shared between sockets, such as an
// encoded broadcast) goes out in one writev without copying it. It keeps
// no goroutine: reads happen on the caller's goroutine, and control
// frames (ping, pong, close) are answered there.
//
// No extension is negotiated (no permessage-deflate): the clients Herald
// serves (browsers, mqtt.js, paho, stomp.js) fall back to plain frames.
package wsconn

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
	"unicode/utf8"
)

// Timeouts of the close handshake.
const (
	// closeTimeout bounds the wait for the peer's close frame after ours.
	closeTimeout = 5 * time.Second
	// controlWriteTimeout bounds writing a control frame when the Conn has
	// no write timeout of its own.
	controlWriteTimeout = 5 * time.Second
)

// Conn is an accepted WebSocket. Reads (ReadMessage, or the NetConn's
// Read) belong to one goroutine at a time; writes may come from any
// goroutine and are serialized.
type Conn struct {
	nc           net.Conn
	pool         *Pool
	limit        int64
	writeTimeout time.Duration
	subprotocol  string

	readMu sync.Mutex // the read side below
	small  [64]byte   // the idle wait's buffer
	rbuf   []byte     // small[:] or *pooled
	pooled *[]byte
	r, w   int // unread bytes are rbuf[r:w]
	// The data frame being read and the message it belongs to.
	frameLeft int64
	frameMask [4]byte
	// The flags sit together, next to frameMask, where they take no
	// padding of their own (a Conn is kept by every idle socket).
	full      bool // the last read filled rbuf: more is likely waiting
	inMsg     bool // a fragmented message continues
	closeSent bool // guarded by writeMu
	maskPos   int
	msgLen    int64
	readErr   error // sticky once the connection is unusable

	writeMu     sync.Mutex
	deadlineSet time.Time // when WriteBatch last moved the write deadline; guarded by writeMu
	// tw does TryWriteMessage's non-blocking writes (trywrite.go), made
	// by the first; guarded by writeMu.
	tw *rawWriter

	pongMu sync.Mutex
	pong   chan struct{} // the pending Ping's, closed by the next pong

	closeOnce sync.Once
	done      chan struct{} // closed by CloseNow
}

func newConn(nc net.Conn, o *Options, subprotocol string, buffered []byte) *Conn {
	c := &Conn{nc: nc, pool: o.Pool, limit: o.ReadLimit, writeTimeout: o.WriteTimeout,
		subprotocol: subprotocol, done: make(chan struct{})}
	if c.pool == nil {
		c.pool = &Pool{}
	}
	if c.limit == 0 {
		c.limit = DefaultReadLimit
	}
	c.rbuf = c.small[:]
	if len(buffered) > 0 {
		// Bytes the HTTP server read past the upgrade request.
		if len(buffered) > len(c.small) {
			c.pooled = c.pool.getRead(len(buffered))
			c.rbuf = *c.pooled
		}
		c.w = copy(c.rbuf, buffered)
	}
	return c
}

// DefaultReadLimit bounds a message when Options.ReadLimit is 0.
const DefaultReadLimit = 32 << 10

// Subprotocol is the subprotocol the handshake chose ("" for none).
func (c *Conn) Subprotocol() string { return c.subprotocol }

// SetReadLimit bounds a message (all its fragments); a longer one closes
// the connection with 1009.
func (c *Conn) SetReadLimit(n int64) {
	c.readMu.Lock()
	c.limit = n
	c.readMu.Unlock()
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr is the listener side's address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// SetReadDeadline sets the read deadline of the underlying connection
// (a read that times out leaves the Conn usable).
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// UnderlyingConn is the hijacked connection under the WebSocket (a *net.TCPConn
// for plain HTTP, a *tls.Conn for HTTPS), for a readiness poller to watch
// while the Conn is Idle. Reading or writing it directly corrupts the
// stream.
func (c *Conn) UnderlyingConn() net.Conn { return c.nc }

// Done is closed once the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Idle reports whether the read side holds nothing: no byte buffered and
// no message in progress. A connection in this state may be handed to a
// readiness poller and its reading resumed later on another goroutine.
// A buffer borrowed for the last burst is given back here: a NetConn
// reader whose read timed out (it waits with a short deadline before it
// parks) may still hold the one its last full read kept.
func (c *Conn) Idle() bool {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.r != c.w || c.frameLeft != 0 || c.inMsg {
		return false
	}
	c.full = false
	c.consumed()
	return true
}

// ReadMessage reads the next data message whole, answering control
// frames on the way. The slice is the caller's. The error is a
// *CloseError once the peer closed, a *ViolationError if it broke the
// protocol (the connection is then closed with that code), or the
// network's.
func (c *Conn) ReadMessage() (Opcode, []byte, error) {
	return c.readMessage(false)
}

// ReadBuffered is ReadMessage for a reader that parks the connection
// while it is idle (see WaitReadable): once nothing more is buffered at a
// message boundary it returns op 0 (and no error) instead of waiting for
// the network. A message begun in the buffer is read to its end.
func (c *Conn) ReadBuffered() (Opcode, []byte, error) {
	return c.readMessage(true)
}

// WaitReadable waits until the peer sends something, reading it into the
// Conn's own 64-byte array: a goroutine parked here holds no buffer, and
// the stack of a goroutine that only waits here stays at its minimum. It
// returns at once when something is buffered. After it, ReadBuffered
// reads what came, typically on another goroutine.
func (c *Conn) WaitReadable() error {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return c.readErr
	}
	if c.r < c.w || c.frameLeft > 0 || c.inMsg {
		return nil
	}
	if err := c.fill(1); err != nil {
		return c.readFailed(err)
	}
	return nil
}

func (c *Conn) readMessage(stopIdle bool) (Opcode, []byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return 0, nil, c.readErr
	}
	var msg []byte
	var op Opcode
	for {
		h, err := c.nextFrame(stopIdle && op == 0)
		if err != nil {
			return 0, nil, err
		}
		if h.op == 0 && op == 0 {
			return 0, nil, nil // idle
		}
		if op == 0 {
			op = h.op
		}
		start := len(msg)
		// nextFrame checked the length against the limit.
		if n := start + int(h.length); n > cap(msg) {
			grown := make([]byte, n, max(n, 2*cap(msg)))
			copy(grown, msg)
			msg = grown
		} else {
			msg = msg[:n]
		}
		if err := c.readPayload(msg[start:], true); err != nil {
			return 0, nil, err
		}
		if h.fin {
			break
		}
	}
	if op == OpText && !utf8.Valid(msg) {
		return 0, nil, c.fail(violation(StatusInvalidFramePayload, "text message is not UTF-8"))
	}
	return op, msg, nil
}

// headerSize is the size of the header whose first two bytes are b0, b1.
func headerSize(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// nextFrame reads frame headers, answering control frames, until the
// header of a data frame; its payload is then c.frameLeft bytes. With
// stopIdle it returns a zero header instead of waiting for the network
// when nothing is buffered between messages.
func (c *Conn) nextFrame(stopIdle bool) (header, error) {
	for {
		if stopIdle && c.r == c.w && c.frameLeft == 0 && !c.inMsg {
			c.full = false // parking: give the buffer back in any case
			c.consumed()
			return header{}, nil
		}
		if c.frameLeft > 0 {
			// The caller left part of a payload unread (a NetConn read);
			// a message reader never does.
			if err := c.skip(c.frameLeft); err != nil {
				return header{}, err
			}
		}
		if err := c.fill(2); err != nil {
			return header{}, c.readFailed(err)
		}
		if err := c.fill(headerSize(c.rbuf[c.r+1])); err != nil {
			return header{}, c.readFailed(err)
		}
		h, n, err := parseHeader(c.rbuf[c.r:c.w])
		if err != nil {
			return h, c.fail(err)
		}
		if !h.masked {
			return h, c.fail(violation(StatusProtocolError, "client frame not masked"))
		}
		c.r += n
		if h.op.control() {
			if err := c.control(h); err != nil {
				return h, err
			}
			continue
		}
		if h.op == OpContinuation {
			if !c.inMsg {
				return h, c.fail(violation(StatusProtocolError, "continuation frame outside a fragmented message"))
			}
		} else {
			if c.inMsg {
				return h, c.fail(violation(StatusProtocolError, "new message inside a fragmented one"))
			}
			c.msgLen = 0
		}
		c.msgLen += h.length
		if c.limit > 0 && c.msgLen > c.limit {
			c.frameLeft = h.length // what drainToClose skips
			return h, c.fail(violation(StatusMessageTooBig, "message longer than the limit"))
		}
		c.inMsg = !h.fin
		c.frameLeft, c.frameMask, c.maskPos = h.length, h.mask, 0
		return h, nil
	}
}

// control handles a control frame whose header was consumed.
func (c *Conn) control(h header) error {
	n := int(h.length) // <= 125, checked by parseHeader
	if err := c.fill(n); err != nil {
		return c.readFailed(err)
	}
	p := c.rbuf[c.r : c.r+n]
	maskBytes(h.mask, 0, p)
	c.r += n
	switch h.op {
	case OpPing:
		err := c.writeControl(OpPong, p)
		c.consumed()
		if err != nil && !errors.Is(err, ErrClosed) {
			return c.readFailed(err)
		}
	case OpPong:
		c.consumed()
		c.pongMu.Lock()
		if c.pong != nil {
			close(c.pong)
			c.pong = nil
		}
		c.pongMu.Unlock()
	case OpClose:
		code, reason, err := parseClose(p)
		c.consumed()
		if err != nil {
			return c.fail(err)
		}
		// Echo the code (RFC 6455 5.5.1), unless our close went first;
		// the handshake is then complete and the server closes TCP.
		c.writeMu.Lock()
		if !c.closeSent {
			c.closeSent = true
			var payload []byte
			if code != StatusNoStatusRcvd {
				payload = closePayload(code, "")
			}
			_ = c.writeFrameLocked(OpClose, payload, controlWriteTimeout)
		}
		c.writeMu.Unlock()
		c.CloseNow()
		c.readErr = &CloseError{Code: code, Reason: reason}
		return c.readErr
	}
	return nil
}

// readPayload reads len(p) bytes of the current frame's payload (all of
// them if all is set, else at least one) and unmasks them.
func (c *Conn) readPayload(p []byte, all bool) error {
	got := 0
	for got < len(p) {
		var n int
		if c.r < c.w {
			n = copy(p[got:], c.rbuf[c.r:c.w])
			c.r += n
		} else if len(p)-got >= 1024 {
			// Large: straight into the caller's slice, no copy.
			var err error
			n, err = c.nc.Read(p[got:])
			if n == 0 && err != nil {
				return c.readFailed(err)
			}
		} else {
			if err := c.fill(1); err != nil {
				return c.readFailed(err)
			}
			continue
		}
		c.maskPos = maskBytes(c.frameMask, c.maskPos, p[got:got+n])
		got += n
		c.frameLeft -= int64(n)
		if !all {
			break
		}
	}
	c.consumed()
	return nil
}

// skip discards n bytes of payload.
func (c *Conn) skip(n int64) error {
	for n > 0 {
		if err := c.fill(1); err != nil {
			return c.readFailed(err)
		}
		k := int(min(n, int64(c.w-c.r)))
		c.r += k
		n -= int64(k)
		c.frameLeft -= int64(k)
	}
	c.consumed()
	return nil
}

// fill makes n (<= 4096) bytes readable at rbuf[r:].
func (c *Conn) fill(n int) error {
	for c.w-c.r < n {
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		if n > len(c.rbuf)-c.r || (c.pooled == nil && c.w > 0) {
			// Data beyond the idle wait's array: borrow a buffer.
			if c.pooled == nil {
				c.pooled = c.pool.getRead(readBufSize)
				c.w = copy(*c.pooled, c.rbuf[c.r:c.w])
				c.r = 0
				c.rbuf = *c.pooled
			} else {
				c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
				c.r = 0
			}
		}
		m, err := c.nc.Read(c.rbuf[c.w:])
		c.w += m
		c.full = c.w == len(c.rbuf)
		if err != nil {
			if c.w-c.r >= n {
				return nil
			}
			if m == 0 && errors.Is(err, io.EOF) && c.w > c.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// consumed returns the borrowed buffer once every byte in it is read
// (unless the last read filled it: the next burst is likely there).
func (c *Conn) consumed() {
	if c.r == c.w && c.pooled != nil && !c.full {
		c.pool.putRead(c.pooled)
		c.pooled = nil
		c.rbuf = c.small[:]
		c.r, c.w = 0, 0
	}
}

// readFailed handles a network error of a read: a timeout leaves the
// connection usable (a NetConn's read deadline), anything else ends it.
func (c *Conn) readFailed(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !c.closing() {
		return err
	}
	c.CloseNow()
	c.readErr = err
	return err
}

// closing reports whether our close frame went out.
func (c *Conn) closing() bool {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.closeSent
}

// fail closes the connection with a violation's code. Unless the framing
// itself is broken (1002), it first reads on to the peer's close frame:
// closing with unread bytes would make the kernel reset the connection,
// and the peer might lose our close frame and its reason.
func (c *Conn) fail(err error) error {
	var v *ViolationError
	if errors.As(err, &v) {
		c.writeMu.Lock()
		sent := c.closeSent
		if !sent {
			c.closeSent = true
			sent = c.writeFrameLocked(OpClose, closePayload(v.Code, v.Reason), controlWriteTimeout) == nil
		}
		c.writeMu.Unlock()
		if sent && v.Code != StatusProtocolError {
			c.drainToClose()
		}
	}
	c.CloseNow()
	c.readErr = err
	return err
}

// maxDrain bounds what drainToClose discards.
const maxDrain = 1 << 20

// drainToClose discards frames up to the peer's close frame (or a
// deadline, an error, maxDrain bytes).
func (c *Conn) drainToClose() {
	_ = c.nc.SetReadDeadline(time.Now().Add(closeTimeout))
	budget := int64(maxDrain)
	for {
		if c.frameLeft > budget {
			return
		}
		budget -= c.frameLeft
		if c.skip(c.frameLeft) != nil || c.fill(2) != nil || c.fill(headerSize(c.rbuf[c.r+1])) != nil {
			return
		}
		h, n, err := parseHeader(c.rbuf[c.r:c.w])
		if err != nil || h.op == OpClose {
			return
		}
		c.r += n
		c.frameLeft = h.length
	}
}

// CloseNow closes the TCP connection without a close handshake.
func (c *Conn) CloseNow() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.nc.Close()
		close(c.done)
	})
	return err
}

// Close starts the close handshake with code and reason, waits (up to
// 5 s) for the peer's close frame and closes the connection. A reader
// running meanwhile receives the peer's frame; without one, Close reads
// until it comes.
func (c *Conn) Close(code StatusCode, reason string) error {
	c.writeMu.Lock()
	sent := c.closeSent
	var err error
	if !sent {
		c.closeSent = true
		err = c.writeFrameLocked(OpClose, closePayload(code, reason), controlWriteTimeout)
	}
	c.writeMu.Unlock()
	if err != nil {
		c.CloseNow()
		return err
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeTimeout))
	if c.readMu.TryLock() {
		// No reader: read until the peer's close frame (or the deadline).
		for c.readErr == nil {
			if _, err := c.nextFrame(false); err == nil {
				if err := c.skip(c.frameLeft); err != nil {
					break
				}
			}
		}
		c.readMu.Unlock()
		c.CloseNow()
		return nil
	}
	t := time.NewTimer(closeTimeout + time.Second)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.CloseNow()
	}
	return nil
}

// Ping sends a ping and waits for a pong (read by the connection's reader,
// which must be running), the context's end or the connection's.
func (c *Conn) Ping(ctx context.Context) error {
	c.pongMu.Lock()
	ch := c.pong
	if ch == nil {
		ch = make(chan struct{})
		c.pong = ch
	}
	c.pongMu.Unlock()
	if err := c.writeControl(OpPing, nil); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-c.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeControl writes a control frame (unless the close went out).
func (c *Conn) writeControl(op Opcode, p []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	t := c.writeTimeout
	if t == 0 {
		t = controlWriteTimeout
	}
	return c.writeFrameLocked(op, p, t)
}

// writeFrameLocked writes one small frame; writeMu is held.
func (c *Conn) writeFrameLocked(op Opcode, p []byte, timeout time.Duration) error {
	var b [maxHeaderLen + maxControlPayload]byte
	f := appendHeader(b[:0], true, op, len(p))
	f = append(f, p...)
	if timeout > 0 {
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		c.deadlineSet = time.Time{} // WriteBatch sets its own again
	}
	_, err := c.nc.Write(f)
	return err
}

// WriteMessage writes one message.
func (c *Conn) WriteMessage(op Opcode, p []byte) error {
	b := c.pool.GetBatch()
	b.Add(op, nil, p)
	err := c.WriteBatch(b)
	c.pool.PutBatch(b)
	return err
}

// WriteBatch writes the batch's messages, in one system call where the
// connection allows (writev), and empties the batch. A write that fails
// (or times out) leaves the connection unusable: the caller closes it.
func (c *Conn) WriteBatch(b *Batch) error {
	if b.n == 0 {
		return nil
	}
	b.seal()
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	defer b.Reset()
	if c.closeSent {
		return ErrClosed
	}
	if c.writeTimeout > 0 {
		// Re-arming the deadline costs a timer update per write; moving it
		// only once half of it has passed still bounds every write by
		// between half and all of the timeout.
		if now := time.Now(); now.Sub(c.deadlineSet) > c.writeTimeout/2 {
			_ = c.nc.SetWriteDeadline(now.Add(c.writeTimeout))
			c.deadlineSet = now
		}
	}
	if len(b.iov) == 1 {
		_, err := c.nc.Write(b.iov[0])
		return err
	}
	v := append(b.scratch[:0], b.iov...)
	b.scratch = v[:0]
	_, err := v.WriteTo(c.nc)
	return err
}
