package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/pkg/rpc/internal/amqpc"
)

// Client calls services. It is safe for concurrent use; one client per
// process is the intended use (it multiplexes every call over one
// connection and RabbitMQ's direct reply-to).
type Client struct {
	cfg  ClientConfig
	gov  *governor
	sess *session

	idPrefix string
	seq      atomic.Uint64
	timers   sync.Pool // *time.Timer, stopped, for calls under the default timeout
	calls    sync.Pool // *call, between calls

	mu struct {
		sync.Mutex
		link   *link // nil while disconnected
		closed bool
	}
	readers sync.WaitGroup // one reader per link
}

// link is one connection's channel: requests are published on it and
// replies (and returns) arrive on it, as direct reply-to requires. The
// connection's reader hands each reply straight to its waiting call.
type link struct {
	conn *amqpc.Conn
	ch   *amqpc.Channel

	mu      sync.Mutex
	pending map[string]chan result // by correlation id
	gone    bool                   // the channel closed: fail new calls at once
}

// result is what ends a call: a reply, a return, or a lost connection.
type result struct {
	reply *amqpc.Delivery
	err   *Error
}

// NewClient connects and returns a client. The first connection must
// succeed; later losses are reconnected in the background, and calls made
// while disconnected fail with UNAVAILABLE (ErrConnectionLost).
func NewClient(cfg ClientConfig) (*Client, error) {
	cfg.defaults()
	c := &Client{cfg: cfg, gov: newGovernor(&cfg), idPrefix: randomID() + "."}
	sess, err := startSession(cfg.ConnConfig, c.attach)
	if err != nil {
		return nil, err
	}
	c.sess = sess
	return c, nil
}

// attach runs on every (re)connection: a channel whose returns fail their
// calls, and a consumer on the direct reply-to pseudo-queue whose
// deliveries end theirs. When the consumer ends (the channel or the
// connection went) the link detaches.
func (c *Client) attach(conn *amqpc.Conn) error {
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	l := &link{conn: conn, ch: ch, pending: map[string]chan result{}}
	ch.NotifyReturn(func(r *amqpc.Return) {
		l.finish(r.CorrelationId, result{err: newError(Unavailable, ErrNoResponders,
			"no instance of "+serviceOf(r.Type)+" ("+r.ReplyText+")")})
	})
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		_ = ch.Close()
		return ErrClosed
	}
	c.readers.Add(1) // the detach that follows the consumer's end
	c.mu.Unlock()
	_, err = ch.Consume(DirectReplyTo, "", true, false, nil,
		func(d *amqpc.Delivery) { l.finish(d.CorrelationId, result{reply: d}) },
		func() { go c.detach(l) })
	if err != nil {
		// The consumer never started, so its end will not run.
		c.readers.Done()
		_ = ch.Close()
		return fmt.Errorf("rpc: consume %s: %w", DirectReplyTo, err)
	}
	c.mu.Lock()
	c.mu.link = l
	c.mu.Unlock()
	return nil
}

// detach fails the calls of a link whose channel has gone. If only the
// channel went (the broker closed it, e.g. 406 for an oversized request)
// and the connection is still up, it opens a new one at once; if the
// connection went, the session reconnects and attaches.
func (c *Client) detach(l *link) {
	defer c.readers.Done()
	c.mu.Lock()
	if c.mu.link == l {
		c.mu.link = nil
	}
	closed := c.mu.closed
	c.mu.Unlock()
	if closed {
		l.fail(newError(Unavailable, ErrClosed, "client closed"))
		return
	}
	l.fail(newError(Unavailable, ErrConnectionLost, "connection to the broker lost"))
	if l.conn.IsClosed() {
		return
	}
	_ = l.ch.Close() // in case only the consumer was cancelled
	if err := c.attach(l.conn); err != nil {
		c.cfg.Logger.Warn("rpc: cannot reopen the client's channel; reconnecting", "err", err)
		_ = l.conn.Close() // the session dials again
	}
}

func (l *link) finish(id string, r result) {
	l.mu.Lock()
	done, ok := l.pending[id]
	delete(l.pending, id)
	l.mu.Unlock()
	if ok {
		done <- r // buffered, one result per call
	} else if r.reply != nil {
		r.reply.Release() // its call has given up
	}
}

func (l *link) fail(err *Error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gone = true
	for id, done := range l.pending {
		done <- result{err: err}
		delete(l.pending, id)
	}
}

func serviceOf(typ string) string {
	s, _, ok := SplitType(typ)
	if !ok {
		return strconv.Quote(typ)
	}
	return s
}

// Call calls method ("service.Method") with req and decodes the reply
// into resp (a pointer). The deadline is ctx's, or ClientConfig.Timeout
// when ctx has none. A failure is an *Error; errors.Is matches
// ErrNoResponders, ErrDeadlineExceeded (and context.DeadlineExceeded),
// ErrConnectionLost, ErrCircuitOpen and ErrRateLimited.
func (c *Client) Call(ctx context.Context, method string, req, resp any, opts ...CallOption) error {
	var o callOptions
	for _, f := range opts {
		f(&o)
	}
	service, _, ok := SplitType(method)
	if !ok {
		return Errorf(InvalidArgument, "method %q is not service.Method", method)
	}
	cl := c.newCall()
	defer c.putCall(cl)
	codec := codecFor(req)
	body, err := codec.marshal(cl.buf, req)
	if err != nil {
		return Errorf(InvalidArgument, "request does not encode as %s: %v", codec.contentType(), err)
	}
	cl.buf = keepBody(body)
	if _, has := ctx.Deadline(); !has && c.cfg.Timeout > 0 {
		// Lazy: no timer unless something asks for Done (a retry's
		// backoff); the wait for the reply uses a pooled timer instead.
		cl.dc = deadlineCtx{Context: ctx, deadline: time.Now().Add(c.cfg.Timeout)}
		cl.hasDC = true
		ctx = &cl.dc
	}
	cl.ctx, cl.service, cl.method, cl.codec, cl.body, cl.resp = ctx, service, method, codec, body, resp
	return c.gov.run(ctx, service, o.idempotent, cl.attempt)
}

// call is one Call's state, pooled: allocated afresh, it and what hangs
// off it (the attempt closure, the default deadline's context, the
// publishing and its header, the reply channel) were several
// allocations per call. Nothing of it outlives Call: the deadline
// context is released, the reply channel is reused only once drained,
// and the publishing is encoded before Publish returns.
type call struct {
	client  *Client
	attempt func() error // cl.once, bound once for the call's life in the pool

	ctx             context.Context
	service, method string
	codec           codec
	body            []byte
	resp            any
	buf             []byte // the request's encoding buffer, reused

	dc    deadlineCtx // ctx when the caller's has no deadline
	hasDC bool

	done       chan result // buffered, empty between calls
	pub        amqpc.Publishing
	headers    [1]amqpc.Field
	deadlineMs int64  // x-deadline's value, headers[0] points at it
	expMs      int64  // the last expiration and its text, reused
	expText    string // when the next call's is the same
}

func (c *Client) newCall() *call {
	if cl, ok := c.calls.Get().(*call); ok {
		return cl
	}
	cl := &call{client: c, done: make(chan result, 1), expMs: -1}
	cl.attempt = cl.once
	cl.headers[0] = amqpc.Field{Key: HeaderDeadline, Value: &cl.deadlineMs}
	return cl
}

func (c *Client) putCall(cl *call) {
	if cl.hasDC {
		cl.dc.release()
		cl.dc = deadlineCtx{}
		cl.hasDC = false
	}
	cl.ctx, cl.codec, cl.body, cl.resp = nil, nil, nil, nil
	cl.pub = amqpc.Publishing{}
	c.calls.Put(cl)
}

// once is one attempt: publish, wait for the reply, a return, the end of
// the connection or the deadline.
func (cl *call) once() error {
	c, ctx := cl.client, cl.ctx
	now := time.Now() // read once: the clock is not free on every machine
	// With the client's default timeout the deadline is watched with a
	// pooled timer and only the caller's own ctx is selected on.
	wait := ctx
	var timeout <-chan time.Time
	if cl.hasDC {
		wait = cl.dc.Context
		if !now.Before(cl.dc.deadline) {
			return ctxError(context.DeadlineExceeded)
		}
		t := c.timer(cl.dc.deadline.Sub(now))
		defer c.timers.Put(t)
		defer t.Stop()
		timeout = t.C
	}
	if err := wait.Err(); err != nil {
		return ctxError(err)
	}
	c.mu.Lock()
	l, closed := c.mu.link, c.mu.closed
	c.mu.Unlock()
	if closed {
		return newError(Unavailable, ErrClosed, "client closed")
	}
	if l == nil {
		return newError(Unavailable, ErrConnectionLost, errNotConnected.Error())
	}
	var idBuf [64]byte // on the stack: the id costs one allocation
	id := string(strconv.AppendUint(append(idBuf[:0], c.idPrefix...), c.seq.Add(1), 36))
	done := cl.done
	l.mu.Lock()
	if l.gone {
		l.mu.Unlock()
		return newError(Unavailable, ErrConnectionLost, errNotConnected.Error())
	}
	l.pending[id] = done
	l.mu.Unlock()
	received := false
	defer func() {
		l.mu.Lock()
		delete(l.pending, id)
		l.mu.Unlock()
		if !received {
			// A result may still come: link.finish and link.fail send
			// after taking the call out of pending. The next call gets a
			// channel of its own.
			cl.done = make(chan result, 1)
		}
	}()

	pub := &cl.pub
	*pub = amqpc.Publishing{Body: cl.body}
	pub.ContentType = cl.codec.contentType()
	pub.CorrelationId = id
	pub.ReplyTo = DirectReplyTo
	pub.Type = cl.method
	if dl, ok := ctx.Deadline(); ok {
		pub.Expiration = cl.expiration(dl, now)
		cl.deadlineMs = dl.UnixMilli()
		pub.HeaderList = cl.headers[:]
	}
	if err := l.ch.Publish("", QueueName(cl.service), true, pub); err != nil {
		if wait.Err() != nil {
			return ctxError(wait.Err())
		}
		return newError(Unavailable, ErrConnectionLost, "publish: "+err.Error())
	}
	select {
	case r := <-done:
		// link.finish sends once per registered call and unregisters
		// it first: done is empty now and nothing else will send on it.
		received = true
		if r.err != nil {
			return r.err
		}
		err := decodeReply(r.reply, cl.codec, cl.resp)
		r.reply.Release() // decoded: the reply holds nothing of it
		return err
	case <-wait.Done():
		return ctxError(wait.Err())
	case <-timeout:
		return ctxError(context.DeadlineExceeded)
	}
}

// expiration is the request's expiration for deadline, its text reused
// from the call before when the milliseconds are the same (as they mostly
// are under a fixed timeout).
func (cl *call) expiration(deadline, now time.Time) string {
	if ms := expirationMs(deadline, now); ms != cl.expMs {
		cl.expMs, cl.expText = ms, strconv.FormatInt(ms, 10)
	}
	return cl.expText
}

// timer returns a pooled timer set to fire after d (Go 1.23 timers: a
// stopped timer's channel holds no stale value, so reuse is safe).
func (c *Client) timer(d time.Duration) *time.Timer {
	if t, ok := c.timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

func decodeReply(d *amqpc.Delivery, reqCodec codec, resp any) error {
	code, msg := parseReply(d)
	if code != OK {
		return &Error{Code: code, Message: msg}
	}
	c := reqCodec
	if d.ContentType != "" {
		var ok bool
		if c, ok = codecByType(d.ContentType); !ok {
			return Errorf(Internal, "reply has unsupported content type %q", d.ContentType)
		}
	}
	if resp == nil {
		return nil
	}
	if err := c.unmarshal(d.Body, resp); err != nil {
		return Errorf(Internal, "malformed %s reply: %v", c.contentType(), err)
	}
	return nil
}

func ctxError(err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) {
		return newError(DeadlineExceeded, err, "no reply before the deadline")
	}
	return newError(Canceled, err, "call cancelled")
}

// Close stops reconnecting, closes the connection (calls in flight fail
// with UNAVAILABLE, ErrClosed) and waits for the client's goroutines to end.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	c.mu.Unlock()
	err := c.sess.close(context.Background())
	c.readers.Wait() // every link's detach has failed its calls
	return err
}

// Stats counts what the client's governance did; see ClientStats.
func (c *Client) Stats() ClientStats { return c.gov.stats() }

// BreakerState is the state of service's circuit breaker: "closed",
// "open", "half-open", or "" when breakers are off or the service was
// never called.
func (c *Client) BreakerState(service string) string { return c.gov.breakerState(service) }
