// Package amqpc is a lean AMQP 0-9-1 client for pkg/rpc: only what the RPC
// convention needs (publish, consume, qos, queue.declare, acks, returns),
// built for the round trip. Compared with amqp091-go it hands a delivery
// from the socket reader straight to its consumer's callback (no
// per-channel and per-consumer goroutines in between), and writers only
// append frames to a buffer that a flusher goroutine writes out, so the
// publishes of callers running at the same time share one write(2).
// amqp091-go stays the interoperability proof in the tests; its URL
// parsing, Config, Table and Authentication types are reused so the
// SDK's public configuration does not change.
package amqpc

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

const (
	defaultHeartbeat = 10 * time.Second
	defaultLocale    = "en_US"
	// defaultFrameMax is what the client proposes; the server may lower it.
	defaultFrameMax = 128 * 1024
	minFrameMax     = 4096
	dialTimeout     = 30 * time.Second
	maxChannels     = 2047
	replySuccess    = 200
	// maxQueued bounds the bytes queued for the flusher; a writer that
	// finds more waits for the flusher to take them.
	maxQueued = 4 << 20
)

// Error is a connection or channel closed by the broker (its reply code
// and text), as amqp.Error.
type Error = amqp.Error

// ErrClosed is returned for work on a connection or channel that has closed.
var ErrClosed = errors.New("amqpc: closed")

// Conn is one AMQP connection. Its methods are safe for concurrent use.
type Conn struct {
	nc       net.Conn
	r        *bufio.Reader
	frameMax int

	// Writes: frames are appended to wbuf under wmu; the flusher goroutine
	// swaps it with wspare and writes it out, many writers' frames at once.
	wmu      sync.Mutex
	wbuf     []byte
	wspare   []byte
	flushing bool // a flush is due: the flusher has been woken
	werr     error
	wdrained sync.Cond     // on wmu: the flusher took the queued bytes
	flush    chan struct{} // wakes the flusher
	// stopFlush ends the flusher; flushDone closes when it has.
	stopFlush, flushDone chan struct{}
	wrote                atomic.Bool // something went out since the heartbeat last looked

	read atomic.Bool // something came in since the heartbeat last looked

	consumerSeq atomic.Uint64 // for consumer tags the caller left empty
	deliveries  sync.Pool     // *Delivery, released by their consumer

	mu       sync.Mutex
	channels map[uint16]*Channel
	nextCh   uint16
	closing  bool
	ended    bool // shutdown has taken the NotifyClose listeners
	// closeOk is signalled when the broker answers our connection.close.
	closeOk chan struct{}

	done     chan struct{} // closed when the reader has ended
	closeErr error         // why; set before done closes
	notify   []chan *Error
	stopHB   chan struct{}
	hbDone   chan struct{}
}

// Dial connects to url (amqp:// or amqps://) with cfg's vhost, SASL,
// heartbeat, TLS, client properties and dialer, as amqp.DialConfig would.
func Dial(url string, cfg amqp.Config) (*Conn, error) {
	uri, err := amqp.ParseURI(url)
	if err != nil {
		return nil, err
	}
	if cfg.SASL == nil {
		cfg.SASL = []amqp.Authentication{uri.PlainAuth()}
	}
	if cfg.Vhost == "" {
		cfg.Vhost = uri.Vhost
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	if cfg.Locale == "" {
		cfg.Locale = defaultLocale
	}
	addr := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	var nc net.Conn
	if cfg.Dial != nil {
		nc, err = cfg.Dial("tcp", addr)
	} else {
		nc, err = net.DialTimeout("tcp", addr, dialTimeout)
	}
	if err != nil {
		return nil, err
	}
	if uri.Scheme == "amqps" {
		tc := cfg.TLSClientConfig
		if tc == nil {
			tc = &tls.Config{}
		}
		if tc.ServerName == "" && !tc.InsecureSkipVerify {
			tc = tc.Clone()
			tc.ServerName = uri.Host
		}
		tconn := tls.Client(nc, tc)
		if err := tconn.Handshake(); err != nil {
			_ = nc.Close()
			return nil, err
		}
		nc = tconn
	}
	c := &Conn{
		nc:       nc,
		r:        bufio.NewReaderSize(nc, 64*1024),
		frameMax: defaultFrameMax,
		channels: map[uint16]*Channel{},
		closeOk:  make(chan struct{}),
		done:     make(chan struct{}),
		stopHB:   make(chan struct{}),
		hbDone:   make(chan struct{}),

		flush:     make(chan struct{}, 1),
		stopFlush: make(chan struct{}),
		flushDone: make(chan struct{}),
	}
	c.wdrained.L = &c.wmu
	_ = nc.SetDeadline(time.Now().Add(dialTimeout))
	hb, err := c.handshake(&cfg)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	go c.flusher()
	go c.readLoop()
	if hb > 0 {
		go c.heartbeat(hb)
	} else {
		close(c.hbDone)
	}
	return c, nil
}

// readFrame reads one frame; its payload is valid until the next call.
func (c *Conn) readFrame(buf *[]byte) (typ uint8, channel uint16, payload []byte, err error) {
	h, err := c.r.Peek(frameHeaderSize)
	if err != nil {
		return 0, 0, nil, err
	}
	typ = h[0]
	channel = binary.BigEndian.Uint16(h[1:3])
	size := int(binary.BigEndian.Uint32(h[3:7]))
	if _, err := c.r.Discard(frameHeaderSize); err != nil {
		return 0, 0, nil, err
	}
	if size > c.frameMax {
		return 0, 0, nil, fmt.Errorf("amqpc: frame of %d bytes exceeds frame_max %d", size, c.frameMax)
	}
	if cap(*buf) < size+1 {
		*buf = make([]byte, size+1)
	}
	b := (*buf)[:size+1]
	if _, err := io.ReadFull(c.r, b); err != nil {
		return 0, 0, nil, err
	}
	if b[size] != frameEnd {
		return 0, 0, nil, errMalformed
	}
	return typ, channel, b[:size], nil
}

// handshake runs start/start-ok, tune/tune-ok, open/open-ok on a fresh
// socket, before the reader starts. It returns the heartbeat interval.
func (c *Conn) handshake(cfg *amqp.Config) (time.Duration, error) {
	if _, err := c.nc.Write([]byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}); err != nil {
		return 0, err
	}
	var buf []byte
	expect := func(method uint16) (dec, error) {
		for {
			typ, ch, p, err := c.readFrame(&buf)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return dec{}, fmt.Errorf("amqpc: the broker closed the connection during the handshake (wrong vhost, credentials or protocol?)")
				}
				return dec{}, err
			}
			if typ == frameHeartbeat {
				continue
			}
			if typ != frameMethod || ch != 0 {
				return dec{}, errMalformed
			}
			d := dec{b: p}
			class, m := d.short(), d.short()
			if class == classConnection && m == mConnClose {
				code, text := d.short(), d.shortstr()
				return dec{}, &Error{Code: int(code), Reason: text}
			}
			if class != classConnection || m != method || d.err != nil {
				return dec{}, fmt.Errorf("amqpc: handshake: got method %d.%d, want 10.%d", class, m, method)
			}
			return d, nil
		}
	}
	d, err := expect(mConnStart)
	if err != nil {
		return 0, err
	}
	_, _ = d.octet(), d.octet() // version
	_ = d.table(0)              // server properties
	mechanisms := string(d.longstr())
	if d.err != nil {
		return 0, errMalformed
	}
	auth, ok := pickSASL(cfg.SASL, mechanisms)
	if !ok {
		return 0, fmt.Errorf("amqpc: the broker offers SASL %q, none configured", mechanisms)
	}
	props := amqp.Table{"product": "herald pkg/rpc", "capabilities": amqp.Table{
		"publisher_confirms": true, "consumer_cancel_notify": true, "basic.nack": true,
		"connection.blocked": true, "authentication_failure_close": true,
	}}
	for k, v := range cfg.Properties {
		props[k] = v
	}
	out, err := appendMethod(nil, 0, classConnection, mConnStartOk, func(e *enc) {
		e.table(props)
		e.shortstr(auth.Mechanism())
		e.longstr([]byte(auth.Response()))
		e.shortstr(cfg.Locale)
	})
	if err != nil {
		return 0, err
	}
	if _, err := c.nc.Write(out); err != nil {
		return 0, err
	}
	if d, err = expect(mConnTune); err != nil {
		return 0, err
	}
	chanMax, frameMax, srvHB := d.short(), d.long(), d.short()
	if d.err != nil {
		return 0, errMalformed
	}
	fm := pickLimit(defaultFrameMax, int(frameMax))
	if cfg.FrameSize > 0 {
		fm = pickLimit(cfg.FrameSize, int(frameMax))
	}
	c.frameMax = max(fm, minFrameMax)
	cm := pickLimit(maxChannels, int(chanMax))
	if cfg.ChannelMax > 0 {
		cm = pickLimit(int(cfg.ChannelMax), cm)
	}
	hb := time.Duration(pickLimit(int(cfg.Heartbeat/time.Second), int(srvHB))) * time.Second
	if cfg.Heartbeat < 0 {
		hb = 0
	}
	out, _ = appendMethod(out[:0], 0, classConnection, mConnTuneOk, func(e *enc) {
		e.short(uint16(cm))
		e.long(uint32(c.frameMax))
		e.short(uint16(hb / time.Second))
	})
	out, err = appendMethod(out, 0, classConnection, mConnOpen, func(e *enc) {
		e.shortstr(cfg.Vhost)
		e.shortstr("")
		e.octet(0)
	})
	if err != nil {
		return 0, err
	}
	if _, err := c.nc.Write(out); err != nil {
		return 0, err
	}
	if _, err := expect(mConnOpenOk); err != nil {
		return 0, err
	}
	c.nextCh = uint16(cm)
	return hb, nil
}

// pickLimit negotiates a limit where 0 means "no limit": the smaller
// non-zero value.
func pickLimit(client, server int) int {
	switch {
	case client == 0:
		return server
	case server == 0:
		return client
	}
	return min(client, server)
}

func pickSASL(have []amqp.Authentication, offered string) (amqp.Authentication, bool) {
	for _, a := range have {
		for _, m := range splitSpace(offered) {
			if m == a.Mechanism() {
				return a, true
			}
		}
	}
	return nil, false
}

func splitSpace(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != ' ' {
			i++
		}
		if i > 0 {
			out = append(out, s[:i])
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// write appends frames (built by fill on the pending buffer) and wakes
// the flusher, which writes everything pending in one write(2). On
// loopback a write costs the writer the receiver's TCP processing too,
// so one per message would dominate a round trip: batching the writes of
// all the callers (or service workers) that are running at the same time
// is most of what this client saves. A write error closes the
// connection; callers see ErrClosed on their next call, the reader the
// connection's end.
func (c *Conn) write(fill func([]byte) ([]byte, error)) error {
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	// Backpressure: while the socket does not take what is queued (the
	// broker stopped reading), writers wait instead of growing the buffer.
	for len(c.wbuf) >= maxQueued && c.werr == nil {
		c.wdrained.Wait()
	}
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	var err error
	if c.wbuf, err = fill(c.wbuf); err != nil {
		c.wmu.Unlock()
		return err
	}
	wake := !c.flushing
	c.flushing = true
	c.wmu.Unlock()
	if wake {
		select {
		case c.flush <- struct{}{}:
		default:
		}
	}
	return nil
}

// flusher writes what write queued until the connection ends.
func (c *Conn) flusher() {
	defer close(c.flushDone)
	for {
		select {
		case <-c.flush:
		case <-c.stopFlush:
			return
		}
		// Let the goroutines that are runnable now (callers woken by the
		// same read, workers handed requests) queue their frames first:
		// they then share this write instead of each paying for one.
		runtime.Gosched()
		c.wmu.Lock()
		out := c.wbuf
		c.wbuf = c.wspare[:0]
		c.flushing = false
		c.wdrained.Broadcast()
		c.wmu.Unlock()
		if len(out) == 0 {
			continue
		}
		_, err := c.nc.Write(out)
		c.wrote.Store(true)
		c.wmu.Lock()
		c.wspare = out[:0]
		if err != nil && c.werr == nil {
			c.werr = err
			c.wdrained.Broadcast()
		}
		c.wmu.Unlock()
		if err != nil {
			_ = c.nc.Close() // the reader ends and reports it
		}
	}
}

// heartbeat sends a heartbeat when nothing was written for an interval
// and closes a connection from which nothing was read for three.
func (c *Conn) heartbeat(interval time.Duration) {
	defer close(c.hbDone)
	tick := time.NewTicker(interval / 2)
	defer tick.Stop()
	silent := 0
	for {
		select {
		case <-c.stopHB:
			return
		case <-tick.C:
		}
		if !c.wrote.Swap(false) {
			_ = c.write(func(b []byte) ([]byte, error) {
				return append(b, frameHeartbeat, 0, 0, 0, 0, 0, 0, frameEnd), nil
			})
		}
		if c.read.Swap(false) {
			silent = 0
		} else if silent++; silent >= 6 {
			_ = c.nc.Close() // the reader ends with an error
			return
		}
	}
}

// readLoop reads frames until the socket ends and hands each to its
// channel, on this goroutine.
func (c *Conn) readLoop() {
	var err error
	var buf []byte
	for {
		var typ uint8
		var ch uint16
		var p []byte
		typ, ch, p, err = c.readFrame(&buf)
		if err != nil {
			break
		}
		c.read.Store(true)
		if typ == frameHeartbeat {
			continue
		}
		if ch == 0 {
			if done, cerr := c.connectionFrame(typ, p); done {
				err = cerr
				break
			}
			continue
		}
		c.mu.Lock()
		chn := c.channels[ch]
		c.mu.Unlock()
		if chn == nil {
			continue // a channel we closed; frames in flight are dropped
		}
		if err = chn.frame(typ, p); err != nil {
			break
		}
	}
	c.shutdown(err)
}

// connectionFrame handles channel 0; done reports the connection's end.
func (c *Conn) connectionFrame(typ uint8, p []byte) (bool, error) {
	if typ != frameMethod {
		return true, errMalformed
	}
	d := dec{b: p}
	class, method := d.short(), d.short()
	if class != classConnection {
		return true, errMalformed
	}
	switch method {
	case mConnClose:
		code, text := d.short(), d.shortstr()
		_ = c.write(func(b []byte) ([]byte, error) {
			return appendMethod(b, 0, classConnection, mConnCloseOk, nil)
		})
		return true, &Error{Code: int(code), Reason: text, Server: true, Recover: false}
	case mConnCloseOk:
		close(c.closeOk)
		return true, nil
	case mConnBlocked, mConnUnblocked:
		return false, nil
	}
	return true, errMalformed
}

// shutdown ends the connection: every channel closes with err, and the
// NotifyClose listeners get it (nil after our own Close).
func (c *Conn) shutdown(err error) {
	// A flusher (or heartbeat) stuck on a socket the broker no longer
	// reads gives up within a second.
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	close(c.stopHB)
	<-c.hbDone
	close(c.stopFlush)
	<-c.flushDone
	// What the flusher left (e.g. the close-ok answering the broker's
	// connection.close) goes out if the socket still takes it.
	c.wmu.Lock()
	if c.werr == nil && len(c.wbuf) > 0 {
		_, _ = c.nc.Write(c.wbuf)
	}
	c.werr = ErrClosed
	c.wdrained.Broadcast()
	c.wmu.Unlock()
	_ = c.nc.Close()
	c.mu.Lock()
	closing := c.closing
	c.closing = true
	chans := c.channels
	c.channels = map[uint16]*Channel{}
	notify := c.notify
	c.notify = nil
	c.ended = true // later NotifyClose calls get a closed channel
	var aerr *Error
	if !closing { // after our own Close there is nothing to report
		if !errors.As(err, &aerr) {
			reason := "connection lost"
			if err != nil {
				reason = err.Error()
			}
			aerr = &Error{Code: amqp.FrameError, Reason: reason}
		}
	}
	c.closeErr = ErrClosed
	if aerr != nil {
		c.closeErr = aerr
	}
	c.mu.Unlock()
	for _, ch := range chans {
		ch.closed(c.closeErr)
	}
	for _, n := range notify {
		if aerr != nil {
			n <- aerr
		}
		close(n)
	}
	close(c.done)
}

// NotifyClose returns n, which gets the broker's or the network's error
// when the connection ends (nothing after Close) and is then closed.
func (c *Conn) NotifyClose(n chan *Error) chan *Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		close(n)
	} else {
		c.notify = append(c.notify, n)
	}
	return n
}

// IsClosed reports whether the connection has ended or is closing.
func (c *Conn) IsClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// Close closes the connection politely (connection.close, awaiting
// close-ok for at most a second) and waits for the reader to end.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closing = true
	c.mu.Unlock()
	err := c.write(func(b []byte) ([]byte, error) {
		return appendMethod(b, 0, classConnection, mConnClose, func(e *enc) {
			e.short(replySuccess)
			e.shortstr("closed by the client")
			e.short(0)
			e.short(0)
		})
	})
	if err == nil {
		t := time.NewTimer(time.Second)
		select {
		case <-c.closeOk:
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.nc.Close()
	<-c.done
	return nil
}

// Channel opens a channel.
func (c *Conn) Channel() (*Channel, error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	var id uint16
	for i := uint16(1); i <= c.nextCh; i++ {
		if c.channels[i] == nil {
			id = i
			break
		}
	}
	if id == 0 {
		c.mu.Unlock()
		return nil, errors.New("amqpc: no free channel")
	}
	ch := newChannel(c, id)
	c.channels[id] = ch
	c.mu.Unlock()
	if _, err := ch.call(mChanOpen, classChannel, mChanOpenOk, func(e *enc) { e.shortstr("") }); err != nil {
		c.forget(ch)
		return nil, err
	}
	return ch, nil
}

func (c *Conn) forget(ch *Channel) {
	c.mu.Lock()
	if c.channels[ch.id] == ch {
		delete(c.channels, ch.id)
	}
	c.mu.Unlock()
}
