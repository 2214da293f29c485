package mqtt

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// conn is one client connection. The read loop (serve) owns the fields
// without a comment; the writer goroutine owns the outbox's write side.
type conn struct {
	h  *Handler
	nc net.Conn
	r  *reader

	clientID string
	key      string // session key: vhost + "\x00" + client id
	vhost    *broker.VHost
	user     string
	owner    broker.Owner
	// pubAllowedGen: see pubAllowed.
	pubAllowedGen uint64
	ps            *pubState // made by the first PUBLISH (pubs)
	sess          *session
	queue         *broker.Queue
	expiry        time.Duration // v5 session expiry; <0 = never
	keepAlive     time.Duration
	// readDeadlineSet is when the read loop last renewed the keep-alive
	// deadline; kaDeadline is that deadline (zero: no keep-alive); both in
	// Unix nanoseconds, 8 bytes where a time.Time takes 24. Read
	// loop only.
	readDeadlineSet int64
	kaDeadline      int64
	will            *packet.Will
	limiter         *broker.Limiter
	// reg is the registry entry whose message counters we bump; atomic
	// because a resumed session's consumers may deliver before serve
	// registers the connection.
	reg      atomic.Pointer[broker.Connection]
	admitted func()                 // releases the connection-limit slot
	rate     *broker.PublishLimiter // nil: no MaxPublishRate

	loginState // who logged in and the permissions checked (token.go)

	// raw reads a plain socket from serve's shallow frame; nil over TLS and
	// WebSocket.
	raw       *kit.RawReader
	rawReader kit.RawReader // what raw points to (one allocation fewer)
	// park holds the connection in the Handler's idle poller, with no
	// goroutine, once it has been silent for ParkAfter (plain TCP, or
	// WebSocket over plain TCP, whose TCP socket is the one watched;
	// nil otherwise; set before any other goroutine sees c). ctx is the
	// connection's, kept for the reader that resumes it; ended runs once
	// the connection is gone.
	park  *kit.Parker
	ctx   context.Context
	ended func()
	// stops undoes open's registrations but the shutdown watch (registry
	// entry, token expiry) once the connection has been torn down.
	stops func()
	// outp is the outbox (see out), made on first use: a connection that
	// has been sent nothing (an idle one) holds none.
	outp atomic.Pointer[outbox]
	// acks: PUBACKs read and not yet acknowledged in their queues (flushed
	// when the read buffer drains, see readLoop).
	acks ackBatch
	// confirms: our PUBACKs/PUBRECs, released in order once their messages
	// are on disk (confirm.go); unsentPubacks counts its PUBACKs, which a
	// v5 client counts against our Receive Maximum until it gets them.
	confirms      *broker.ConfirmQueue[*packet.Ack]
	unsentPubacks atomic.Int32

	mu sync.Mutex // guards consumers
	// connacked: CONNACK is written, writers may run (see out).
	connacked atomic.Bool
	consumers map[string]*broker.Consumer // made by the first consumer

	done      chan struct{}
	closeOnce sync.Once

	// Set by the handshake, before any goroutine but the read loop sees
	// c; read by the outbox's writers.
	maxPacket uint32 // client's Maximum Packet Size, 0 = none
	aliasMax  uint16 // client's Topic Alias Maximum

	// The small fields together, so that the struct has no padding
	// between them (it stays in a smaller size class: every idle
	// connection has one).
	version byte
	// pubAllowed caches write on amq.topic at users generation
	// pubAllowedGen (see allowPublish).
	pubAllowed bool
	// deleteQueue: the session ends with the connection (v5 Session Expiry 0
	// resuming an old persistent session).
	deleteQueue bool
	persistent  bool
	// parking: the reader may park (after the handshake, while the poller
	// runs).
	parking   bool
	cleanExit bool // a DISCONNECT without will was received
}

func newConn(h *Handler, nc net.Conn) *conn {
	c := &conn{
		h: h, nc: nc, r: newReader(nc, &h.readBufs),
		done: make(chan struct{}),
	}
	ws := wsconn.Of(nc)
	if ws == nil && c.rawReader.Init(nc) {
		c.raw = &c.rawReader
	}
	switch {
	case h.cfg.ParkAfter <= 0:
	case c.raw != nil:
		c.park = h.poller.NewParker(nc, c.resume)
	case ws != nil:
		// The poller watches the TCP socket under the WebSocket; the
		// reader reads on through the WebSocket's frame decoder.
		c.park = h.poller.NewParker(ws.UnderlyingConn(), c.resume)
	}
	return c
}

// out is the connection's outbox, made on first use: the first delivery,
// control packet or close. The connection's CONNACK is written directly
// (writeDirect), so an idle connection that has been sent nothing since
// holds no outbox (~570 bytes with its channel and socket handle).
func (c *conn) out() *outbox {
	if o := c.outp.Load(); o != nil {
		return o
	}
	o := newOutbox(c)
	if !c.outp.CompareAndSwap(nil, o) {
		return c.outp.Load()
	}
	// startWriters stores connacked before it loads outp: one of the two
	// sees the other, and start may run twice.
	if c.connacked.Load() {
		o.start()
	}
	return o
}

// retireOutbox drops the outbox if it holds nothing (outbox.retire): an
// idle connection that was sent a PINGRESP or a message a while ago costs
// what one that was never sent anything does. The read loop calls it as it
// parks, so a connection drops it at most once per packet it reads.
func (c *conn) retireOutbox() {
	if o := c.outp.Load(); o != nil {
		o.retire()
	}
}

// startWriters lets the outbox's writers run once CONNACK is written:
// deliveries queued by the consumers started during the handshake must
// not precede it.
func (c *conn) startWriters() {
	c.connacked.Store(true)
	if o := c.outp.Load(); o != nil {
		o.start()
	}
}

// label is the connection's metrics protocol label: mqtt or mqtt-ws.
func (c *conn) label() string {
	if wsconn.Of(c.nc) != nil {
		return metrics.ProtocolMQTTWS
	}
	return metrics.ProtocolMQTT
}

// logger is the connection's logger, with its peer and client id. It is
// made when something is logged, not kept: a clone of the Handler's logger
// per connection would cost every idle connection a few hundred bytes.
func (c *conn) logger() *slog.Logger {
	args := []any{"remote", c.nc.RemoteAddr().String()}
	if c.clientID != "" {
		args = append(args, "client_id", c.clientID)
	}
	return c.h.log.With(args...)
}

// debugOn reports whether debug lines are logged. Every connect and
// disconnect logs one: checked first, so that they do not build the
// connection's logger (and its arguments) for nothing, garbage that also
// fragments the heap which the idle connections live in.
func (c *conn) debugOn() bool {
	return c.h.log.Enabled(context.Background(), slog.LevelDebug)
}

// pubState is what only a connection that publishes holds: a subscriber
// that never publishes, and an idle connection, have none (the conn stays
// in a smaller size class). Read loop only.
type pubState struct {
	pub       *broker.Publisher
	inAliases map[uint16]string // v5 topic aliases the client set
	// inQoS2: inbound QoS 2 packet ids of this connection awaiting PUBREL
	// (what counts against our Receive Maximum).
	inQoS2  map[uint16]struct{}
	replies map[string]*broker.Queue // response topic -> direct reply queue
}

// pubs is the connection's publishing state, made by its first PUBLISH.
func (c *conn) pubs() *pubState {
	if c.ps == nil {
		c.ps = &pubState{}
	}
	return c.ps
}

// publisher is the connection's publisher, made when it first publishes.
// Read loop only.
func (c *conn) publisher() *broker.Publisher {
	ps := c.pubs()
	if ps.pub == nil {
		ps.pub = c.vhost.Publisher()
	}
	return ps.pub
}

// dropInQoS2 forgets an inbound QoS 2 packet id (PUBREL, or a refusal).
func (c *conn) dropInQoS2(id uint16) {
	if c.ps != nil {
		delete(c.ps.inQoS2, id)
	}
}

// kick asks the connection to close with a v5 DISCONNECT reason (session
// taken over, server shutting down, an operator's close, a protocol error):
// the writer sends it and closes the socket, which ends the read loop. Only
// the first reason is sent.
func (c *conn) kick(code packet.ReasonCode) {
	c.closeOnce.Do(func() {
		if c.version == packet.V5 {
			c.out().pushClose(&packet.Disconnect{ReasonCode: code})
		} else {
			c.out().pushClose(nil)
		}
	})
}

// serve runs the connection until it ends or parks; ended runs once it
// has ended, on whichever goroutine ends it.
func (c *conn) serve(ctx context.Context, ended func()) {
	c.ctx, c.ended = ctx, ended
	if !c.open(ctx) {
		c.closeSocket()
		return
	}
	if c.park != nil {
		c.parking = true
		c.r.src = packetReader{c}
	}
	c.run(c.readLoop(ctx))
}

// resume is a parked connection's new reader: the socket is readable, the
// keep-alive ran out, or the connection is being closed (kit.Parker).
func (c *conn) resume() {
	c.nc.SetReadDeadline(c.idleReadDeadline(time.Now()))
	c.run(kit.ErrDrained)
}

// run is the read loop's outer frame. It stays on the stack of a
// connection waiting for bytes, so it is kept small: the setup and the
// teardown, with their many locals, are calls that return before the wait
// (see kit.RawReader).
func (c *conn) run(err error) {
	for err == kit.ErrDrained {
		// Wait for the next bytes here, in a shallow frame, so that the
		// collector can shrink an idle connection's stack.
		if c.raw != nil {
			err = c.r.fillRaw(c.raw)
		} else {
			err = c.r.fillFrom(c.nc) // WebSocket: through its frame decoder
		}
		if err == nil {
			err = c.readLoop(c.ctx)
		} else if c.parking && c.parkable(err) {
			if ws := wsconn.Of(c.nc); ws != nil && !ws.Idle() {
				// Part of a WebSocket frame came (a header, or a payload
				// announced): wait for the rest as for the rest of a
				// packet, until the keep-alive deadline.
				err = kit.ErrDrained
				c.nc.SetReadDeadline(c.keepAliveDeadline())
				c.readDeadlineSet = 0 // the next packet sets ParkAfter's again
				continue
			}
			// Silent for ParkAfter and the keep-alive still runs: wait in
			// the poller, with no goroutine, until the next bytes or the
			// keep-alive deadline; an outbox with nothing in it (made
			// for a PINGRESP, say) is dropped meanwhile.
			c.retireOutbox()
			if c.park.Park(c.keepAliveDeadline()) {
				return // resume carries on; c is not ours any more
			}
			err = kit.ErrDrained
			c.parking = false // the poller is closed: read as before
			c.nc.SetReadDeadline(c.keepAliveDeadline())
		}
	}
	c.end(c.ctx, err)
	c.closeSocket()
}

// parkable reports whether a read that failed with err timed out only on
// ParkAfter, not on the keep-alive.
func (c *conn) parkable(err error) bool {
	if !c.parking {
		return false
	}
	ne, ok := err.(net.Error)
	if !ok || !ne.Timeout() {
		return false
	}
	return c.kaDeadline == 0 || time.Now().UnixNano() < c.kaDeadline
}

// idleReadDeadline is when a read that starts now gives up: the
// keep-alive deadline or, for a connection that may park, ParkAfter from
// now if that is sooner.
func (c *conn) idleReadDeadline(now time.Time) time.Time {
	d := c.keepAliveDeadline()
	if c.parking {
		if p := now.Add(c.h.cfg.ParkAfter); d.IsZero() || p.Before(d) {
			d = p
		}
	}
	return d
}

// keepAliveDeadline is kaDeadline as a time (zero: none).
func (c *conn) keepAliveDeadline() time.Time {
	if c.kaDeadline == 0 {
		return time.Time{}
	}
	return time.Unix(0, c.kaDeadline)
}

// packetReader reads the rest of a packet on a connection that may park:
// its read deadline may be ParkAfter's, which must not cut a packet that
// arrives slowly; past it, the read waits on until the keep-alive
// deadline. The common path is one Read.
type packetReader struct{ c *conn }

func (pr packetReader) Read(p []byte) (int, error) {
	for {
		n, err := pr.c.nc.Read(p)
		if n > 0 || err == nil || !pr.c.parkable(err) {
			return n, err
		}
		pr.c.nc.SetReadDeadline(pr.c.keepAliveDeadline())
		// The read loop sets ParkAfter's deadline again after this
		// packet, however soon (else the connection would not park
		// before its next packet).
		pr.c.readDeadlineSet = 0
	}
}

// wake resumes the connection if it is parked: whoever closes the socket
// from outside the reader calls it (a closed socket leaves the poller
// without an event).
func (c *conn) wake() {
	if c.park != nil {
		c.park.Wake()
	}
}

// closeSocket is the last thing a connection does.
func (c *conn) closeSocket() {
	if c.admitted != nil {
		c.admitted()
	}
	c.r.Release()
	if c.park != nil {
		c.park.Release()
	}
	c.nc.Close()
	close(c.done)
	c.h.cfg.Counters.ConnClosed(c.label())
	c.ended()
}

// open runs the handshake and registers the session; it reports whether
// the read loop should run. What end must undo is kept in c.stops.
func (c *conn) open(ctx context.Context) bool {
	// Shutdown during the handshake: unblock the CONNECT read at once
	// instead of waiting for ConnectTimeout.
	stopHS := context.AfterFunc(ctx, func() { c.nc.SetReadDeadline(time.Unix(1, 0)) })
	ok := c.handshake()
	stopHS()
	if !ok {
		return false
	}
	if c.debugOn() {
		c.logger().Debug("mqtt client connected", "version", c.version)
	}
	proto := "MQTT 3.1.1"
	switch c.version {
	case packet.V5:
		proto = "MQTT 5.0"
	case packet.V31:
		proto = "MQTT 3.1"
	}
	// An operator's close (management API) is a v5 DISCONNECT 0x98.
	reg, unregister := c.h.broker.RegisterConnection(broker.ConnectionInfo{Protocol: proto, User: c.user, VHost: c.vhost.Name(),
		Peer: c.nc.RemoteAddr().String(), Local: c.nc.LocalAddr().String(), Owner: c.owner,
		Close: func(string) { c.kick(packet.AdministrativeAction) }})
	c.reg.Store(reg)
	c.acks.reg = reg
	c.rate = c.h.broker.NewPublishLimiter(c.h.cfg.MaxPublishRate)
	// CONNACK is out: writers may run (deliveries queued meanwhile follow it).
	c.startWriters()
	stopExpiry := c.watchExpiry()
	// Shutdown becomes a DISCONNECT and a close, which ends the read loop
	// (no watcher goroutine per connection: AfterFunc runs only if needed).
	if ctx.Err() != nil {
		// Cancelled during the handshake, whose read deadline may be in
		// the past already: say why before the read loop times out.
		c.kick(packet.ServerShuttingDown)
	}
	c.h.watchShutdown(ctx, c)
	c.stops = func() {
		stopExpiry()
		unregister()
	}
	return true
}

// end closes an established connection after its read loop ended with err.
func (c *conn) end(ctx context.Context, err error) {
	c.h.unwatchShutdown(c.ctx)
	abnormal := !c.cleanExit
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		if c.debugOn() {
			c.logger().Debug("mqtt connection ended", "err", err) // logger adds client_id
		}
		var pe *packet.Error
		if errors.As(err, &pe) {
			c.h.cfg.Counters.ProtocolError(c.label())
			c.kick(pe.Code)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			c.kick(packet.KeepAliveTimeout)
		}
	}
	c.out().close()
	c.nc.Close()
	c.teardown(abnormal && ctx.Err() == nil)
	c.stops()
}

// keepAliveSlack is how late after 1.5 times the keep-alive a silent
// client may be disconnected: the read deadline is renewed at most this
// often, since each renewal costs a runtime timer update.
const keepAliveSlack = 100 * time.Millisecond

// extendReadDeadline lets the client stay silent for 1.5 times its
// keep-alive from now [MQTT-3.1.2-24] (up to keepAliveSlack more).
// A connection that may park reads until ParkAfter at most (see run).
func (c *conn) extendReadDeadline() {
	now := time.Now()
	if now.UnixNano()-c.readDeadlineSet < int64(keepAliveSlack) {
		return
	}
	c.readDeadlineSet = now.UnixNano()
	if c.keepAlive > 0 {
		c.kaDeadline = now.Add(c.keepAlive*3/2 + keepAliveSlack).UnixNano()
	}
	c.nc.SetReadDeadline(c.idleReadDeadline(now))
}

// readLoop decodes and dispatches packets until the connection ends.
// PUBACKs are settled in batches: their deliveries are acknowledged in the
// queues when the read buffer is drained (before a read that may block),
// at ackBatchMax, before any other packet and when the loop ends, so a
// subscriber acknowledging a burst frees its in-flight window in one step
// and the queues refill it in one dispatch.
func (c *conn) readLoop(ctx context.Context) error {
	defer c.acks.flush()
	for {
		if c.r.Buffered() == 0 || c.acks.full() {
			c.flushAcks()
		}
		if c.keepAlive > 0 || c.parking {
			c.extendReadDeadline()
		}
		if (c.raw != nil || c.park != nil) && c.r.Buffered() == 0 {
			return kit.ErrDrained // run reads the next bytes
		}
		p, err := c.r.Read(c.version, c.h.cfg.MaxPacketSize)
		if err != nil {
			return err
		}
		if _, ack := p.(*packet.Ack); !ack {
			// Unsubscribe and teardown requeue what is in flight, and a
			// publish may wait for queues to drain: settle first.
			c.flushAcks()
		}
		switch p := p.(type) {
		case *packet.Publish:
			err = c.handlePublish(ctx, p)
		case *packet.Ack:
			err = c.handleAck(p)
		case *packet.Subscribe:
			err = c.handleSubscribe(p)
		case *packet.Unsubscribe:
			c.handleUnsubscribe(p)
		case *packet.Pingreq:
			c.out().push(&packet.Pingresp{})
		case *packet.Disconnect:
			// A normal DISCONNECT discards the will [MQTT-3.14.4-3]; v5
			// reason 0x04 asks for it to be published anyway.
			c.cleanExit = p.ReasonCode != packet.DisconnectWithWill
			if c.version == packet.V5 && p.Properties.SessionExpiry != nil && c.persistent {
				c.expiry = time.Duration(*p.Properties.SessionExpiry) * time.Second
			}
			return nil
		default:
			// CONNECT twice [MQTT-3.1.0-2], AUTH, or a server-to-client packet.
			return &packet.Error{Code: packet.ProtocolError, Text: "unexpected packet type"}
		}
		if err != nil {
			return err
		}
	}
}

// flushAcks acknowledges the PUBACKed deliveries in their queues; the
// credit they free may let retained messages waiting for the window go.
func (c *conn) flushAcks() {
	if len(c.acks.pending) == 0 {
		return
	}
	c.acks.flush()
	if c.out().waitingCredit() {
		c.out().kickCredit()
	}
}

// teardown releases everything the connection held. Unacknowledged
// deliveries go back to their queues flagged redelivered, so a persistent
// session gets them again (with DUP) on reconnect.
func (c *conn) teardown(abnormal bool) {
	// Answers still waiting for the disk have nobody to go to; their
	// messages are routed and become durable all the same.
	if c.confirms != nil {
		c.confirms.Close()
	}
	c.mu.Lock()
	consumers := c.consumers
	c.consumers = nil
	c.mu.Unlock()
	for _, cons := range consumers {
		cons.Cancel()
	}
	sent := c.out().requeueAll()
	c.h.broker.ReleaseOwner(c.owner)
	// A v5 DISCONNECT may have set the session expiry to 0: the session
	// ends now.
	ended := c.deleteQueue || (c.persistent && c.expiry == 0)
	if c.queue != nil && (ended || (!c.persistent && c.queue.Durable())) {
		c.vhost.DeleteQueue(c.queue.Name(), 0, false, false)
		c.h.dropSession(c.vhost, c.clientID)
	} else if !c.persistent {
		c.h.dropSession(c.vhost, c.clientID)
	} else if c.queue != nil {
		// The record keeps when the client left: the expiry runs on
		// across a restart.
		c.saveSession(time.Now(), false, nil)
		// A reconnect gets the messages it did not acknowledge again with
		// their packet ids (not across a restart: the ids are not logged).
		c.sess.mu.Lock()
		c.sess.resend = sent
		c.sess.mu.Unlock()
		if c.expiry > 0 {
			c.h.expireLater(c.key, c.vhost, c.clientID, c.expiry)
		}
	}
	c.h.unregister(c)
	if abnormal && c.will != nil {
		c.publishWill()
	}
	if c.debugOn() {
		c.logger().Debug("mqtt client disconnected")
	}
}

// publishWill publishes the last will, after its v5 Will Delay Interval
// (capped by the session's lifetime) unless the client reconnects first.
func (c *conn) publishWill() {
	w, vhost, clientID, version := c.will, c.vhost, c.clientID, c.version
	publish := func() {
		if err := c.allowWill(w.Topic); err != nil {
			c.h.log.Info("mqtt will refused", "client_id", clientID, "topic", w.Topic, "err", err)
			return
		}
		p := &packet.Publish{QoS: w.QoS, Retain: w.Retain, Topic: w.Topic, Payload: w.Payload, Properties: w.Properties}
		m := toMessage(p, w.Topic, clientID, version, time.Now())
		if _, err := vhost.Publisher().Publish(m); err != nil {
			c.h.log.Warn("mqtt will publish failed", "client_id", clientID, "err", err)
		} else if w.Retain {
			c.h.retain(vhost, w.Topic, m)
		}
	}
	delay := time.Duration(w.Properties.WillDelay) * time.Second
	if c.expiry >= 0 && delay > c.expiry {
		delay = c.expiry
	}
	if delay <= 0 {
		publish()
		return
	}
	c.h.willLater(c.key, delay, publish)
}
