package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
	"github.com/heraldmq/herald/internal/web"
)

// replySubID is the subscription id under which replies to a socket's
// reply address are pushed.
const replySubID = "$reply"

// wsSession is one /ws connection: the read loop (wait, and resume for
// each burst of frames) runs the protocol, a writer started on demand
// drains the outbox (wswriter.go), and timers close the socket on server
// shutdown and ping the peer. An idle plain-HTTP socket is parked in the
// server's poller (kit.IdlePoller) with no goroutine at all; an idle TLS
// socket runs one goroutine, wait, on a minimal stack and with no buffer
// (wsconn).
type wsSession struct {
	s     *Server
	c     *wsconn.Conn
	user  *auth.User
	vhost *broker.VHost
	owner broker.Owner
	ob    *outbox
	// remote is the peer's address, for the log lines (logger).
	remote string
	// pub is made by the first publish (publisher); read loop only.
	pub *broker.Publisher
	// confirms releases the answers to publishes ("confirmed", errors) in
	// order, each "confirmed" once its message is on disk when it must be
	// (see publish); made by the first publish (confirmQueue), read loop.
	confirms *broker.ConfirmQueue[wsAnswer]
	reg      *broker.Connection // registry entry: message counters
	// rate is the socket's --max-publish-rate bucket (nil: no limit);
	// read loop only. Waiting for a token stops reading the socket.
	rate *broker.PublishLimiter
	// stop is closed by shutdown: it ends a wait for a publish token.
	stop     chan struct{}
	stopOnce sync.Once
	// pubAllowed caches the last exchange publish was allowed to write
	// to, at users generation pubAllowedGen; read loop only.
	pubAllowed    string
	pubAllowedGen uint64
	pubAllowedOK  bool
	// closing stops the writer between frames so that a close frame can
	// get onto the wire behind the frame in progress.
	closing atomic.Bool
	done    chan struct{} // closed when the read loop ends
	// writers counts the running writer (wswriter.go).
	writers sync.WaitGroup
	// release undoes openWS's registrations.
	release func()
	// nextPing (Unix ns) and pinging: the heartbeat's schedule, guarded
	// by the server's watch (wswatch.go).
	nextPing int64
	pinging  bool
	// park parks the idle socket in the server's poller; nil when the
	// socket cannot be parked (TLS, not Linux): wait keeps a goroutine.
	park *kit.Parker

	mu    sync.Mutex      // guards subs and reply
	subs  map[string]*sub // made by the first subscribe
	reply *sub
	// batch: the client asked (/ws?batch=1) for several frames per
	// WebSocket message, newline-separated (the writer's scratch buffers
	// come from Server.wbufs).
	batch bool
	// rt: client id, token expiry, heartbeat, presence, per-user
	// messages (realtime.go).
	rt wsRealtime
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	vname := r.URL.Query().Get("vhost")
	if vname == "" {
		vname = broker.DefaultVHost
	}
	v := s.usableVHost(w, r, vname)
	if v == nil {
		return
	}
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server shutting down")
		return
	}
	defer s.untrack()
	c, err := wsconn.Accept(w, r, s.wsAcceptOptions())
	if err != nil {
		s.log.Info("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return // Accept has answered
	}
	s.startWS(c, r, userOf(r), v, nil)
}

// startWS sets an accepted socket's session up on a goroutine of its
// own and lets the HTTP handler return: the server's connection
// goroutine, its stack grown by the request's handling, and its request
// state go away. The session then parks until its peer sends (idle), or,
// where it cannot park, waits on a fresh goroutine that does nothing else
// (wait), so that an idle socket costs one minimal stack and no buffer. The shell's Track keeps shutdown waiting
// for the session.
func (s *Server) startWS(c *wsconn.Conn, r *http.Request, u *auth.User, v *broker.VHost, connect *flexString) {
	if !s.track() {
		_ = c.Close(wsconn.StatusGoingAway, "server shutting down")
		return
	}
	info := wsPeer{remote: r.RemoteAddr, batch: r.URL.Query().Get("batch") == "1"}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		info.local = a.String()
	}
	go func() {
		ws := s.openWS(c, info, u, v, connect)
		if ws == nil {
			s.untrack()
			return
		}
		ws.idle()
	}()
}

// wsPeer is what a session keeps of its upgrade request.
type wsPeer struct {
	remote, local string
	batch         bool
}

// openWS starts the session of an accepted socket of user u; connect is
// the frame of an in-band login (wsconnect.go), answered once the session
// runs. It returns nil when a connection limit refuses the socket.
func (s *Server) openWS(c *wsconn.Conn, r wsPeer, u *auth.User, v *broker.VHost, connect *flexString) *wsSession {
	// Connection limits are checked once the socket is up, so that the
	// client (a browser cannot read an HTTP status of a refused upgrade)
	// learns why: close 1013 "try again later" with the reason.
	release, err := s.broker.AdmitConnection(u.Name, v.Name())
	if err != nil {
		s.log.Info("websocket refused by a connection limit", "remote", r.remote, "err", err)
		_ = c.Close(wsconn.StatusTryAgainLater, truncateReason(limitReason(err)))
		return nil
	}
	ws := &wsSession{
		s: s, c: c, user: u, vhost: v, owner: s.broker.NewOwner(),
		remote: r.remote,
		done:   make(chan struct{}),
		rate:   s.broker.NewPublishLimiter(s.cfg.MaxPublishRate), stop: make(chan struct{}),
		batch: r.batch,
	}
	ws.ob = newKickedOutbox(s.cfg.Outbox, ws)
	ws.rt.connectID = connect
	closed := s.streamOpened(protocolWS)
	var unregister func()
	ws.reg, unregister = s.broker.RegisterConnection(broker.ConnectionInfo{Protocol: "Web", User: ws.user.Name, VHost: v.Name(),
		Peer: r.remote, Local: r.local, Owner: ws.owner, Close: func(reason string) {
			// Close waits for the peer's close frame: not in the caller.
			go ws.shutdown(wsconn.StatusPolicyViolation, truncateReason(reason))
		}})
	ws.release = func() {
		unregister()
		closed()
		release()
	}
	ws.park = s.poller.NewParker(c.UnderlyingConn(), ws.wake)
	if !ws.watch() {
		// The server is shutting down: the socket closes as soon as it runs.
		go ws.shutdown(wsconn.StatusGoingAway, "server shutting down")
	}
	ws.openRealtime()
	return ws
}

// logger is the session's logger, with its peer and user. It is made
// when something is logged, not kept: a clone of the server's logger per
// socket would cost every idle one a few hundred bytes.
func (ws *wsSession) logger() *slog.Logger {
	return ws.s.log.With("remote", ws.remote, "user", ws.user.Name)
}

// publisher is the session's publisher, made by its first publish: a
// socket that only subscribes holds none. Read loop only.
func (ws *wsSession) publisher() *broker.Publisher {
	if ws.pub == nil {
		ws.pub = ws.vhost.Publisher()
	}
	return ws.pub
}

// confirmQueue is the session's ConfirmQueue, made by its first publish
// (a socket that only subscribes holds none). Read loop only.
func (ws *wsSession) confirmQueue() *broker.ConfirmQueue[wsAnswer] {
	if ws.confirms == nil {
		ws.confirms = broker.NewConfirmQueue(ws.sendAnswer)
	}
	return ws.confirms
}

// truncateReason fits a close reason into a WebSocket close frame (123 bytes).
func truncateReason(s string) string {
	for len(s) > 123 {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// idle is the session's idle state: once nothing is buffered the socket
// is parked in the server's poller, whose wake-up (the peer sent
// something or hung up, the poller closed, Wake after a close from
// outside) starts wake on a new goroutine; the calling goroutine ends.
// Where the socket cannot be parked, a goroutine waits (wait).
func (ws *wsSession) idle() {
	if ws.park != nil && !ws.c.Idle() {
		// Bytes are buffered already: those the HTTP server read past the
		// upgrade (its background read takes one byte of the first
		// frame). Run them first; a socket with unread bytes cannot park.
		ws.wake()
		return
	}
	if ws.park != nil && ws.park.Park(time.Time{}) {
		return // wake runs later; this goroutine must not touch ws
	}
	go ws.wait()
}

// wake runs the burst of frames that woke a parked session, on a fresh
// goroutine whose stack goes away when the session parks again.
func (ws *wsSession) wake() {
	err := ws.c.WaitReadable()
	if err == nil {
		err = ws.resume()
	}
	if err != nil {
		ws.end(err)
		return
	}
	ws.idle()
}

// wait is the idle state of a session that cannot park (TLS, no poller):
// it waits for the peer with no buffer (wsconn.Conn.WaitReadable) and
// runs each burst of frames on a goroutine of its own (resume), whose
// stack may grow while it works and goes away with it.
func (ws *wsSession) wait() {
	var err error
	burstDone := make(chan error, 1)
	for err == nil {
		if err = ws.c.WaitReadable(); err == nil {
			go func() { burstDone <- ws.resume() }()
			err = <-burstDone
		}
		if err == nil && ws.park != nil && ws.c.Idle() && ws.park.Park(time.Time{}) {
			return // parkable again (a Park that failed once, e.g. for a full poll set)
		}
	}
	ws.end(err)
}

// unpark wakes a parked session after its socket was closed from outside
// the reader (a closed socket leaves the poller without an event): the
// reader then finds it closed and ends.
func (ws *wsSession) unpark() {
	if ws.park != nil {
		ws.park.Wake()
	}
}

// resume reads and runs the frames the peer sent until none is left
// buffered; an error ends the session (end).
func (ws *wsSession) resume() error {
	for {
		op, b, err := ws.c.ReadBuffered()
		if err != nil || op == 0 {
			return err
		}
		ws.handle(b)
	}
}

// end closes the session once its reading failed or the peer closed.
func (ws *wsSession) end(err error) {
	ws.stopWatch()
	ws.logger().Debug("websocket closed", "err", err)
	if wsViolation(err, ws.closing.Load()) {
		ws.s.cfg.Counters.ProtocolError(protocolWS)
	}
	if ws.confirms != nil {
		ws.confirms.Close()
	}
	close(ws.done)
	ws.closing.Store(true)
	ws.mu.Lock()
	subs := make([]*sub, 0, len(ws.subs)+1)
	for _, x := range ws.subs {
		subs = append(subs, x)
	}
	if ws.reply != nil {
		subs = append(subs, ws.reply)
	}
	ws.mu.Unlock()
	for _, x := range subs {
		x.bc.Cancel()
	}
	ws.closeRealtime()
	ws.ob.close() // no writer starts after this
	ws.writers.Wait()
	ws.s.broker.ReleaseOwner(ws.owner)
	if ws.park != nil {
		ws.park.Release() // before the close (kit.Parker)
	}
	_ = ws.c.CloseNow()
	ws.release()
	ws.s.untrack()
}

// shutdown closes the socket with a close code; the read loop then ends.
func (ws *wsSession) shutdown(code wsconn.StatusCode, reason string) {
	ws.closing.Store(true)
	ws.stopOnce.Do(func() { close(ws.stop) })
	_ = ws.c.Close(code, reason)
	ws.unpark()
}

// checkSlow closes the socket when a private subscription queue is deeper
// than the limit (the outbox signalled that it refused a delivery).
func (ws *wsSession) checkSlow() {
	if ws.closing.Load() {
		return
	}
	if q := ws.tooSlow(); q != "" {
		ws.logger().Warn("closing slow websocket subscriber", "queue", q, "limit", ws.s.cfg.SlowSubscriberDepth)
		ws.closing.Store(true)
		go ws.shutdown(wsconn.StatusPolicyViolation, "too slow") // Close waits for the peer: not in the writer
	}
}

// tooSlow names a private subscription queue deeper than the limit.
func (ws *wsSession) tooSlow() string {
	ws.mu.Lock()
	var qs []*broker.Queue
	for _, x := range ws.subs {
		if x.private {
			qs = append(qs, x.queue)
		}
	}
	if ws.rt.user != nil {
		qs = append(qs, ws.rt.user.queue)
	}
	ws.mu.Unlock()
	for _, q := range qs {
		if q.Stats().Ready > ws.s.cfg.SlowSubscriberDepth {
			return q.Name()
		}
	}
	return ""
}

// handle runs one client message.
func (ws *wsSession) handle(b []byte) {
	f, err := parseFrame(b)
	if f != nil {
		ws.pace(f.Op)
	} else {
		ws.pace("")
	}
	if err != nil {
		ws.sendError("", http.StatusBadRequest, err.Error())
		return
	}
	ws.dispatch(f)
}

func (ws *wsSession) send(v any) { ws.ob.control(mustJSON(v)) }

func (ws *wsSession) sendError(id flexString, code int, msg string) {
	m := map[string]any{"op": "error", "code": code, "message": msg}
	if id != "" {
		m["id"] = id
	}
	ws.send(m)
}

func (ws *wsSession) brokerError(id flexString, err error) {
	ws.sendError(id, web.HTTPStatus(err), err.Error())
}

// dispatch runs one client frame.
func (ws *wsSession) dispatch(f *wsFrame) {
	switch f.Op {
	case "subscribe":
		ws.subscribe(f)
	case "unsubscribe":
		ws.mu.Lock()
		x := ws.subs[string(f.ID)]
		delete(ws.subs, string(f.ID))
		ws.mu.Unlock()
		if x == nil {
			ws.sendError(f.ID, http.StatusNotFound, fmt.Sprintf("no subscription %q", f.ID))
			return
		}
		// Deliveries not yet acknowledged stay pending: the client may
		// still ack or nack them, and they are requeued when it leaves.
		x.bc.Cancel()
		ws.leavePresence(x)
		ws.send(map[string]any{"op": "unsubscribed", "id": f.ID})
	case "ack", "nack":
		p, ok := ws.ob.settle(f.Tag)
		if !ok {
			ws.sendError(f.ID, http.StatusPreconditionFailed, fmt.Sprintf("unknown delivery tag %d", f.Tag))
			return
		}
		switch {
		case f.Op == "ack":
			p.queue.Ack(p.id)
			ws.reg.CountAck(1)
		case f.Requeue == nil || *f.Requeue:
			p.queue.Requeue(p.id)
		default:
			p.queue.Discard(p.id)
		}
	case "touch":
		// Renews the consumer-timeout lease of a delivery still being
		// worked on (NSQ's TOUCH, NATS's in-progress ack).
		p, ok := ws.ob.lookup(f.Tag)
		if !ok {
			ws.sendError(f.ID, http.StatusPreconditionFailed, fmt.Sprintf("unknown delivery tag %d", f.Tag))
			return
		}
		p.queue.Touch(p.id)
		ws.send(map[string]any{"op": "touched", "tag": f.Tag})
	case "publish":
		ws.publish(f)
	case "reply_address":
		ws.replyAddress(f)
	case "ping":
		ws.send(map[string]any{"op": "pong", "id": f.ID})
	default:
		ws.dispatchRealtime(f)
	}
}

// wsAnswer is the answer to a publish frame: "confirmed" (confirm set) or
// an error.
type wsAnswer struct {
	id      flexString
	b       []byte
	confirm bool
}

// maxUnsentConfirms bounds the answers a socket may have waiting for the
// disk; beyond it the read loop stops reading (push-back).
const maxUnsentConfirms = 4096

// sendAnswer hands a due answer to the writer; it runs under the
// ConfirmQueue's lock, maybe on the log's commit goroutine. err is set if
// the message could not be written to disk: the client gets an error (500)
// instead of "confirmed".
func (ws *wsSession) sendAnswer(a wsAnswer, err error) {
	if err != nil && a.confirm {
		ws.logger().Error("websocket publish not written to disk; not confirmed", "err", err)
		a.b = mustJSON(map[string]any{"op": "error", "id": a.id, "code": http.StatusInternalServerError,
			"message": "the message could not be written to disk: " + err.Error()})
	}
	ws.ob.answer(a.b)
}

// publishError answers a refused publish, in order behind the answers
// still waiting for the disk.
func (ws *wsSession) publishError(id flexString, code int, msg string) {
	m := map[string]any{"op": "error", "code": code, "message": msg}
	if id != "" {
		m["id"] = id
	}
	ws.confirmQueue().Add(wsAnswer{id: id, b: mustJSON(m)})
	ws.ob.waitControl()
}

// publish routes a publish frame. With confirm, "confirmed" means what a
// publisher confirm means: for a persistent message (delivery_mode 2)
// that a durable queue took, that it is on disk; the read loop does not
// wait for that (the answers of many publishes share one fsync), the
// ConfirmQueue sends it when it is due, in order.
func (ws *wsSession) publish(f *wsFrame) {
	m, err := f.message()
	if err == nil {
		err = checkUserID(&m.Properties, ws.user.Name)
	}
	if err != nil {
		ws.publishError(f.ID, http.StatusBadRequest, err.Error())
		return
	}
	if err := ws.allowPublish(m.Exchange, m.RoutingKey); err != nil {
		ws.publishError(f.ID, web.HTTPStatus(err), err.Error())
		return
	}
	// --max-publish-rate: wait for a token in the read loop, which stops
	// reading the socket meanwhile (push-back, as AMQP; nothing dropped).
	if !ws.rate.Wait(ws.stop) {
		return // the socket is being closed
	}
	n, err := ws.publisher().Publish(m)
	if err == nil {
		err = ws.publisher().RefusedError()
	}
	if err != nil {
		ws.publishError(f.ID, web.HTTPStatus(err), err.Error())
		return
	}
	ws.reg.CountPublish()
	if f.Confirm {
		ws.confirmQueue().Confirm(ws.publisher(), wsAnswer{id: f.ID, confirm: true,
			b: mustJSON(map[string]any{"op": "confirmed", "id": f.ID, "routed": n > 0})})
		ws.confirms.Wait(maxUnsentConfirms, ws.stop)
		ws.ob.waitControl()
	}
	if ws.publisher().Congested() {
		// Push-back: stop reading this socket until the queues drain.
		ws.rt.paused.Store(true)
		ws.publisher().WaitFlow(ws.done, ws.owner)
		ws.rt.paused.Store(false)
	}
}

func (ws *wsSession) subscribe(f *wsFrame) {
	id := string(f.ID)
	ws.mu.Lock()
	_, dup := ws.subs[id]
	ws.mu.Unlock()
	if dup || id == replySubID {
		ws.sendError(f.ID, http.StatusBadRequest, fmt.Sprintf("subscription id %q already in use", id))
		return
	}
	v := ws.vhost
	var q *broker.Queue
	var err error
	private := f.Exchange != nil
	var args broker.Table
	prefetch := f.Prefetch
	if f.Stream != "" {
		if args, err = streamArgs(f.Offset, ""); err != nil {
			ws.sendError(f.ID, http.StatusBadRequest, err.Error())
			return
		}
		if prefetch == 0 {
			prefetch = defaultStreamPrefetch
		}
		q, err = ws.s.streamQueue(ws.user, v, f.Stream, ws.owner)
	} else if private {
		// Broadcast: a queue of this socket's own, bound to the exchange.
		ex := exchangeName(*f.Exchange)
		if ex == "" {
			ws.sendError(f.ID, http.StatusBadRequest, "cannot bind to the default exchange; subscribe to a queue instead")
			return
		}
		q, err = ws.s.privateQueue(ws.user, v, ex, f.Key, ws.owner)
	} else if err = ws.s.check(ws.user, v, auth.Read, auth.Queue, f.Queue); err == nil {
		q, err = v.UsableQueue(f.Queue, ws.owner)
	}
	if err != nil {
		ws.brokerError(f.ID, err)
		return
	}
	x := &sub{o: ws.ob, id: id, queue: q, auto: f.Ack != "client", private: private, args: args}
	x.noAck = x.auto && private
	resume, resuming := resumeOffset(args)
	var before broker.StreamInfo
	if resuming {
		before, _ = q.StreamInfo()
	}
	err = ws.consume(x, prefetch)
	answerFields := map[string]any{"op": "subscribed", "id": f.ID, "queue": q.Name()}
	if resuming && err == nil {
		// A resume (an integer offset) is recovered when nothing between it
		// and the tail was lost: the offset was not yet dropped by retention
		// once the reader was positioned, nor past the end when it asked.
		after, _ := q.StreamInfo()
		answerFields["recovered"] = resume >= after.FirstOffset && resume <= before.NextOffset
	}
	answer := mustJSON(answerFields)
	answered := false
	if err == nil {
		// With presence, the answer goes out before the join frames.
		if answered, err = ws.joinPresence(x, f, answer); err != nil {
			x.bc.Cancel()
		}
	}
	if err != nil {
		if private {
			_, _ = v.DeleteQueue(q.Name(), ws.owner, false, false)
		}
		ws.brokerError(f.ID, err)
		return
	}
	ws.mu.Lock()
	if ws.subs == nil {
		ws.subs = make(map[string]*sub)
	}
	ws.subs[id] = x
	ws.mu.Unlock()
	if !answered {
		ws.ob.control(answer)
	}
	ws.start(x)
}

func (ws *wsSession) consume(x *sub, prefetch int) error {
	bc, err := x.queue.Consume(broker.ConsumerOptions{Tag: "herald.ws." + x.id, NoAck: x.noAck, Prefetch: prefetch, Owner: ws.owner, Sink: x, Args: x.args})
	if err != nil {
		return err
	}
	x.bc = bc
	return nil
}

// start opens a subscription's gate once its answer is queued, so that
// the first message cannot overtake it.
func (ws *wsSession) start(x *sub) {
	x.started.Store(true)
	x.bc.Resume()
}

// replyAddress gives the socket a private queue for replies (RabbitMQ's
// direct reply-to: the address routes through the default exchange).
func (ws *wsSession) replyAddress(f *wsFrame) {
	ws.mu.Lock()
	x := ws.reply
	ws.mu.Unlock()
	if x == nil {
		q := ws.vhost.DeclareReplyQueue(ws.owner)
		x = &sub{o: ws.ob, id: replySubID, queue: q, auto: true}
		if err := ws.consume(x, 0); err != nil {
			ws.brokerError(f.ID, err)
			return
		}
		ws.mu.Lock()
		ws.reply = x
		ws.mu.Unlock()
		defer ws.start(x)
	}
	ws.send(map[string]any{"op": "reply_address", "id": f.ID, "address": x.queue.Name(), "sub": replySubID})
}

// allowPublish checks write on exchange with a one-entry cache valid until
// users or permissions change: it runs for every published frame.
func (ws *wsSession) allowPublish(exchange, key string) error {
	if err := ws.s.checkTopic(ws.user, ws.vhost, auth.Write, exchange, key); err != nil {
		return err
	}
	gen := ws.s.users.Generation()
	if ws.pubAllowedOK && ws.pubAllowedGen == gen && ws.pubAllowed == exchange {
		return nil
	}
	if err := ws.s.check(ws.user, ws.vhost, auth.Write, auth.Exchange, exchange); err != nil {
		return err
	}
	ws.pubAllowed, ws.pubAllowedGen, ws.pubAllowedOK = exchange, gen, true
	return nil
}

// countDeliveries counts the messages of a batch the writer took (one
// atomic add per batch).
func (ws *wsSession) countDeliveries(batch []outItem) {
	n := 0
	for i := range batch {
		if batch[i].sub != nil {
			n++
		}
	}
	if n > 0 {
		ws.reg.CountDeliver(n)
	}
}

// limitReason is the text of a connection-limit refusal.
func limitReason(err error) string {
	var be *broker.Error
	if errors.As(err, &be) {
		return be.Text
	}
	return err.Error()
}
