package stomp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

// closeTimeout bounds how long a closing connection may take to write its
// last frames to a peer that does not read.
const closeTimeout = 3 * time.Second

// Bounds on what a client may make the server hold for it.
const (
	maxTransactions  = 64
	maxTxFrames      = 10000
	maxTxBytes       = 64 << 20
	maxSubscriptions = 4096
)

// protoError is a failure that ends the connection with an ERROR frame:
// message is the short header, detail the body.
type protoError struct {
	message, detail string
	// headers go on the ERROR frame after message and content-type.
	headers []frame.Header
}

func (e *protoError) Error() string { return e.message + ": " + e.detail }

// violations are the ERROR messages that say the client broke the
// protocol (counted as protocol errors), as opposed to a refusal by the
// broker (access, limits, missing queues) or a heart-beat timeout.
var violations = map[string]bool{
	"Bad command": true, "Frame too large": true, "Invalid frame": true, "Illegal command": true,
	"Version mismatch": true, "Invalid header": true, "Missing header": true, "Invalid transaction": true,
	"Duplicated subscription identifier": true, "Bad subscription": true, "Invalid message-id": true,
}

// count counts an ERROR that closes the connection in the metrics.
func (c *conn) count(pe *protoError) {
	if violations[pe.message] {
		c.h.cfg.Counters.ProtocolError(metrics.ProtocolSTOMP)
	}
}

func errorf(message, format string, args ...any) *protoError {
	return &protoError{message: message, detail: fmt.Sprintf(format, args...)}
}

// coreError turns a broker error into the ERROR RabbitMQ would send.
func coreError(err error) *protoError {
	var be *broker.Error
	if !errors.As(err, &be) {
		return &protoError{message: "internal_error", detail: err.Error()}
	}
	names := map[broker.Code]string{
		broker.CodeAccessRefused:      "access_refused",
		broker.CodeNotFound:           "not_found",
		broker.CodeResourceLocked:     "resource_locked",
		broker.CodePreconditionFailed: "precondition_failed",
		broker.CodeResourceError:      "resource_error",
		broker.CodeCommandInvalid:     "command_invalid",
		broker.CodeNotAllowed:         "not_allowed",
		broker.CodeNotImplemented:     "not_implemented",
	}
	name, ok := names[be.Code]
	if !ok {
		name = "internal_error"
	}
	return &protoError{message: name, detail: strings.ToUpper(name) + " - " + be.Text}
}

type conn struct {
	h   *Handler
	nc  net.Conn
	ws  bool
	log *slog.Logger
	fr  *frame.Reader
	out *outbox
	// confirms releases receipts (and a final ERROR) in order, each once
	// what it answers is on disk (confirm.go).
	confirms *broker.ConfirmQueue[outItem]

	// Set by the handshake, read-only afterwards.
	version frame.Version
	owner   broker.Owner
	vhost   *broker.VHost
	user    string
	// pubAllowed caches the last exchange SEND was allowed to write to, at
	// users generation pubAllowedGen (see allowPublish).
	pubAllowed    string
	pubAllowedGen uint64
	pubAllowedOK  bool
	session       string
	reg           *broker.Connection     // registry entry: message counters
	admitted      func()                 // releases the connection-limit slot
	rate          *broker.PublishLimiter // nil: no MaxPublishRate
	loginState                           // who logged in, the permissions checked (token.go)
	sendHB        time.Duration          // server -> client heart-beat interval
	recvHB        time.Duration          // client -> server heart-beat interval

	// Read-loop state.
	pub     *broker.Publisher
	subs    map[string]*subscription
	txs     map[string][]*frame.Frame
	txBytes int                      // body bytes held by open transactions
	temp    map[string]*broker.Queue // /temp-queue/ name -> its private queue
	closing chan struct{}            // closed when the connection is going away
	once    sync.Once
	// shuttingDown is set when the server sent "server shutting down", so
	// the read error that follows is not reported as another ERROR.
	shuttingDown atomic.Bool

	// Writer state.
	wbuf []byte
	msg  frame.Frame // reused for every MESSAGE
	// writeDeadline is the socket's write deadline, renewed lazily by
	// the writer (extendWriteDeadline); writer goroutine only.
	writeDeadline time.Time
}

func newConn(h *Handler, nc net.Conn, ws bool) *conn {
	c := &conn{
		h:       h,
		nc:      nc,
		ws:      ws,
		log:     h.log.With("remote", nc.RemoteAddr().String(), "proto", "stomp"),
		fr:      frame.NewReader(nc, h.cfg.Limits),
		out:     newOutbox(),
		owner:   h.broker.NewOwner(),
		subs:    make(map[string]*subscription),
		txs:     make(map[string][]*frame.Frame),
		temp:    make(map[string]*broker.Queue),
		closing: make(chan struct{}),
	}
	c.confirms = newConfirms(c)
	return c
}

func (c *conn) markClosing() { c.once.Do(func() { close(c.closing) }) }

// abort tears the socket down; the read loop then ends.
func (c *conn) abort() {
	c.markClosing()
	_ = c.nc.Close()
}

func (c *conn) serve(ctx context.Context) {
	defer c.nc.Close()
	defer c.h.broker.ReleaseOwner(c.owner)
	defer func() {
		if c.admitted != nil {
			c.admitted()
		}
	}()
	if err := c.handshake(ctx); err != nil {
		// A refused login was logged, with its reason, where it was refused.
		if !errors.Is(err, io.EOF) && !errors.Is(err, auth.ErrInvalidCredentials) {
			c.log.Info("stomp handshake failed", "err", err)
		}
		return
	}
	c.log = c.log.With("vhost", c.vhost.Name(), "session", c.session)
	c.log.Debug("stomp connection open", "version", c.version, "send_hb", c.sendHB, "recv_hb", c.recvHB)
	proto := "STOMP " + c.version.String()
	if c.ws {
		proto = "Web STOMP " + c.version.String()
	}
	c.rate = c.h.broker.NewPublishLimiter(c.h.cfg.MaxPublishRate)
	var unregister func()
	c.reg, unregister = c.h.broker.RegisterConnection(broker.ConnectionInfo{Protocol: proto, User: c.user, VHost: c.vhost.Name(),
		Peer: c.nc.RemoteAddr().String(), Local: c.nc.LocalAddr().String(), Owner: c.owner, Close: func(reason string) {
			// An operator closed it (management API): ERROR, then close.
			c.shuttingDown.Store(true)
			c.out.push(outItem{f: errorFrame("connection closed", reason, ""), close: true})
			_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
		}})
	defer unregister()
	defer c.watchExpiry()()

	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writerLoop(stop)
	}()
	go func() {
		select {
		case <-ctx.Done():
			c.shuttingDown.Store(true)
			c.out.push(outItem{f: errorFrame("server shutting down", "The server is shutting down; reconnect later.", ""), close: true})
			// A client that does not read must not hold the shutdown up.
			_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
		case <-c.closing:
		}
	}()

	err := c.readLoop()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Info("stomp connection ended", "err", err)
	}
	// Receipts still waiting for the disk (a DISCONNECT's among them), and
	// an ERROR queued behind them, go out before the writer stops.
	wctx, cancel := context.WithTimeout(ctx, closeTimeout)
	c.confirms.Wait(1, wctx.Done())
	cancel()
	c.confirms.Close()
	c.markClosing()
	c.teardown()
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	close(stop)
	<-writerDone
}

// supportedVersions is the version header of a version mismatch ERROR.
const supportedVersions = "1.0,1.1,1.2"

func errorFrame(message, detail, receipt string) *frame.Frame {
	f := &frame.Frame{Command: frame.ERROR, Headers: []frame.Header{{Key: "message", Value: message}, {Key: "content-type", Value: "text/plain"}}, Body: []byte(detail)}
	if receipt != "" {
		f.Add("receipt-id", receipt)
	}
	return f
}

// fail sends an ERROR frame; the writer closes the connection after it, as
// the spec requires.
func (c *conn) fail(pe *protoError, receipt string) {
	c.log.Debug("stomp error", "message", pe.message, "detail", pe.detail)
	c.count(pe)
	// Behind the receipts still waiting for the disk.
	ef := errorFrame(pe.message, pe.detail, receipt)
	ef.Headers = append(ef.Headers, pe.headers...)
	c.confirms.Add(outItem{f: ef, close: true})
}

// readErr maps a frame decoding error to the ERROR the client gets.
func readErr(err error) *protoError {
	switch {
	case errors.Is(err, frame.ErrUnknownCommand), errors.Is(err, frame.ErrBadCommand):
		return errorf("Bad command", "Could not interpret command: %v", err)
	case errors.Is(err, frame.ErrFrameTooLarge), errors.Is(err, frame.ErrBodyTooLarge),
		errors.Is(err, frame.ErrHeaderTooLong), errors.Is(err, frame.ErrTooManyHeaders):
		return errorf("Frame too large", "%v", err)
	}
	return errorf("Invalid frame", "Could not parse frame: %v", err)
}

// handshake reads CONNECT (or STOMP), authenticates, and answers CONNECTED.
func (c *conn) handshake(ctx context.Context) error {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.h.cfg.HandshakeTimeout))
	// A shutdown must not wait for a client that never sends CONNECT.
	stopWatch := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Now()) })
	defer stopWatch()
	var f *frame.Frame
	for f == nil {
		var err error
		if f, err = c.fr.Read(); err != nil {
			if ctx.Err() != nil {
				return c.refuse(errorf("server shutting down", "The server is shutting down; reconnect later."), "", err)
			}
			if errors.Is(err, io.EOF) || isNetErr(err) {
				return err
			}
			return c.refuse(readErr(err), "", err)
		}
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	receipt := f.Value("receipt")
	if f.Command != frame.CONNECT && f.Command != frame.STOMP {
		return c.refuse(errorf("Illegal command", "You must log in using CONNECT first, got %s", f.Command), receipt, nil)
	}
	c.version = frame.V10
	if av, ok := f.Get("accept-version"); ok {
		c.version = 0
		for _, s := range strings.Split(av, ",") {
			if v, ok := frame.ParseVersion(strings.TrimSpace(s)); ok && v > c.version {
				c.version = v
			}
		}
		if c.version == 0 {
			// STOMP 1.2, Protocol Negotiation: the ERROR lists the
			// versions the server supports in its version header.
			pe := errorf("Version mismatch", "Supported protocol versions are %s", supportedVersions)
			pe.headers = []frame.Header{{Key: "version", Value: supportedVersions}}
			return c.refuse(pe, receipt, nil)
		}
	}
	c.fr.SetVersion(c.version)

	login, hasLogin := f.Get("login")
	passcode := f.Value("passcode")
	certUser := ""
	if !hasLogin {
		// Over TLS with a verified client certificate, its CN is the user
		// (RabbitMQ's ssl_cert_login); otherwise RabbitMQ's default_user:
		// a CONNECT without credentials logs in as guest, which still
		// only works from localhost.
		if certUser = kit.VerifiedCertCN(c.nc); certUser != "" {
			login = certUser
		} else {
			login, passcode = "guest", "guest"
		}
	}
	if certUser != "" {
		if u, ok := c.h.users.User(login); !ok || (u.LoopbackOnly && !kit.IsLoopback(c.nc.RemoteAddr())) {
			c.log.Info("stomp certificate login refused", "user", login)
			c.h.cfg.Counters.AuthFailed(metrics.ProtocolSTOMP)
			return c.refuse(errorf("Bad CONNECT", "Access refused for user '%s'", login), receipt, nil)
		}
	} else if usr, err := c.h.users.Authenticate(login, passcode, c.nc.RemoteAddr()); err != nil {
		c.log.Info("stomp login refused", "user", login, "err", err)
		c.h.cfg.Counters.AuthFailed(metrics.ProtocolSTOMP)
		return c.refuse(errorf("Bad CONNECT", "Access refused for user '%s'", login), receipt, err)
	} else {
		login = c.setLogin(usr) // a token's user replaces the login sent
	}
	host := f.Value("host")
	c.vhost = c.h.broker.VHost(host)
	if c.vhost == nil {
		// Most clients put the server's host name here (go-stomp,
		// stomp.js); those get the default vhost.
		c.vhost = c.h.broker.VHost(c.h.cfg.DefaultVHost)
		if c.vhost == nil {
			return c.refuse(errorf("Bad CONNECT", "Virtual host '%s' access denied", host), receipt, nil)
		}
	}
	c.user = login
	if err := c.checker().CheckVHost(login, c.vhost.Name()); err != nil {
		c.log.Info("stomp vhost access refused", "user", login, "vhost", c.vhost.Name())
		return c.refuse(errorf("access_refused", "ACCESS_REFUSED - %s", err.Error()), receipt, err)
	}
	release, err := c.h.broker.AdmitConnection(login, c.vhost.Name())
	if err != nil {
		c.log.Info("stomp connection refused by a connection limit", "user", login, "vhost", c.vhost.Name(), "err", err)
		return c.refuse(coreError(err), receipt, err)
	}
	c.admitted = release
	if c.version >= frame.V11 {
		if hb, ok := f.Get("heart-beat"); ok {
			cx, cy, ok := parseHeartBeat(hb)
			if !ok {
				return c.refuse(errorf("Invalid header", "heart-beat must be two comma-separated integers, got '%s'", hb), receipt, nil)
			}
			offer := c.h.cfg.Heartbeat
			if cy > 0 && offer > 0 {
				c.sendHB = max(offer, cy)
			}
			if cx > 0 && offer > 0 {
				c.recvHB = max(offer, cx)
			}
		}
	}
	var sid [8]byte
	_, _ = rand.Read(sid[:])
	c.session = "session-" + hex.EncodeToString(sid[:])
	c.pub = c.vhost.Publisher()
	connected := &frame.Frame{Command: frame.CONNECTED, Headers: []frame.Header{
		{Key: "session", Value: c.session},
		{Key: "heart-beat", Value: fmt.Sprintf("%d,%d", c.sendHB.Milliseconds(), c.recvHB.Milliseconds())},
		{Key: "server", Value: "Herald/" + c.h.cfg.Version},
	}}
	if c.version >= frame.V11 {
		connected.Headers = append([]frame.Header{{Key: "version", Value: c.version.String()}}, connected.Headers...)
	}
	c.wbuf = frame.Append(c.wbuf[:0], connected, c.version)
	ok := c.flush()
	if !ok {
		return net.ErrClosed
	}
	return nil
}

// refuse answers a failed handshake with ERROR and reports err (or the
// protocol error) to serve, which closes the socket.
func (c *conn) refuse(pe *protoError, receipt string, err error) error {
	c.count(pe)
	if c.version == 0 {
		c.version = frame.V12
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	ef := errorFrame(pe.message, pe.detail, receipt)
	ef.Headers = append(ef.Headers, pe.headers...)
	c.wbuf = frame.Append(c.wbuf[:0], ef, c.version)
	c.flush()
	if err == nil {
		err = pe
	}
	return err
}

func parseHeartBeat(s string) (cx, cy time.Duration, ok bool) {
	a, b, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 31)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 31)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return time.Duration(x) * time.Millisecond, time.Duration(y) * time.Millisecond, true
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readLoop reads and handles frames until the client disconnects, a
// frame is bad (ERROR, then close) or the socket fails.
func (c *conn) readLoop() error {
	for {
		for c.out.backlogged() {
			select {
			case <-c.out.drained:
			case <-c.closing:
				return nil
			}
		}
		if c.recvHB > 0 {
			// The spec leaves the tolerance to us; RabbitMQ-style clients
			// are late by a fraction of an interval, so allow two.
			_ = c.nc.SetReadDeadline(time.Now().Add(2 * c.recvHB))
		}
		f, err := c.fr.Read()
		if err != nil {
			if c.shuttingDown.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && c.recvHB > 0 {
				c.fail(errorf("Heart-beat timeout", "No frame or heart-beat from the client in %v", 2*c.recvHB), "")
				return nil
			}
			if errors.Is(err, io.EOF) || isNetErr(err) {
				return err
			}
			c.fail(readErr(err), "")
			return nil
		}
		if f == nil {
			continue // heart-beat
		}
		if err := c.handle(f); err != nil {
			var pe *protoError
			if !errors.As(err, &pe) {
				pe = coreError(err)
			}
			c.fail(pe, f.Value("receipt"))
			return nil
		}
		if f.Command == frame.DISCONNECT {
			return nil
		}
	}
}

// handle runs one frame and sends its receipt if it asked for one.
func (c *conn) handle(f *frame.Frame) error {
	var err error
	switch f.Command {
	case frame.SEND, frame.ACK, frame.NACK:
		if tx, ok := f.Get("transaction"); ok {
			err = c.enlist(tx, f)
			break
		}
		err = c.apply(f)
	case frame.SUBSCRIBE:
		err = c.subscribe(f)
	case frame.UNSUBSCRIBE:
		err = c.unsubscribe(f)
	case frame.BEGIN:
		err = c.begin(f)
	case frame.COMMIT:
		err = c.commit(f)
	case frame.ABORT:
		err = c.abortTx(f)
	case frame.DISCONNECT:
	case frame.CONNECT, frame.STOMP:
		err = errorf("Illegal command", "Already connected")
	default:
		err = errorf("Bad command", "Could not interpret command %s: it is sent by servers, not clients", f.Command)
	}
	if err != nil {
		return err
	}
	if r, ok := f.Get("receipt"); ok {
		c.receipt(r)
		c.confirms.Wait(maxUnsentReceipts, c.closing)
	}
	return nil
}

// apply runs a SEND, ACK or NACK now (outside a transaction or at COMMIT).
func (c *conn) apply(f *frame.Frame) error {
	switch f.Command {
	case frame.SEND:
		return c.send(f)
	case frame.ACK:
		return c.settle(f, true)
	default:
		return c.settle(f, false)
	}
}

func require(f *frame.Frame, key string) (string, error) {
	v, ok := f.Get(key)
	if !ok || v == "" {
		return "", errorf("Missing header", "Frame %s needs a '%s' header", f.Command, key)
	}
	return v, nil
}

func (c *conn) begin(f *frame.Frame) error {
	tx, err := require(f, "transaction")
	if err != nil {
		return err
	}
	if _, ok := c.txs[tx]; ok {
		return errorf("Invalid transaction", "Transaction %s is already active", tx)
	}
	if len(c.txs) >= maxTransactions {
		return errorf("Too many transactions", "At most %d transactions may be open at once", maxTransactions)
	}
	c.txs[tx] = []*frame.Frame{}
	return nil
}

func (c *conn) enlist(tx string, f *frame.Frame) error {
	ops, ok := c.txs[tx]
	if !ok {
		return errorf("Invalid transaction", "Transaction %s is not active", tx)
	}
	// Open transactions are buffered in memory until COMMIT: bound them.
	if len(ops) >= maxTxFrames || c.txBytes+len(f.Body) > maxTxBytes {
		return errorf("Transaction too large", "Transaction %s exceeds %d frames or %d body bytes", tx, maxTxFrames, maxTxBytes)
	}
	c.txBytes += len(f.Body)
	c.txs[tx] = append(ops, f)
	return nil
}

func (c *conn) commit(f *frame.Frame) error {
	tx, err := require(f, "transaction")
	if err != nil {
		return err
	}
	ops, ok := c.txs[tx]
	if !ok {
		return errorf("Invalid transaction", "Transaction %s is not active", tx)
	}
	c.dropTx(tx)
	for _, op := range ops {
		if err := c.apply(op); err != nil {
			return err
		}
	}
	return nil
}

func (c *conn) abortTx(f *frame.Frame) error {
	tx, err := require(f, "transaction")
	if err != nil {
		return err
	}
	if _, ok := c.txs[tx]; !ok {
		return errorf("Invalid transaction", "Transaction %s is not active", tx)
	}
	c.dropTx(tx)
	return nil
}

func (c *conn) dropTx(tx string) {
	for _, op := range c.txs[tx] {
		c.txBytes -= len(op.Body)
	}
	delete(c.txs, tx)
}

// send publishes a SEND frame into the core.
func (c *conn) send(f *frame.Frame) error {
	ds, err := require(f, "destination")
	if err != nil {
		return err
	}
	d, err := parseDestination(ds)
	if err != nil {
		return err
	}
	props, err := sendProperties(f)
	if err != nil {
		return err
	}
	if rt, ok := strings.CutPrefix(props.ReplyTo, "/temp-queue/"); ok && rt != "" {
		// The reply address is the temp queue's real name, so that a
		// server replying through the default exchange reaches it.
		q, err := c.tempQueue(rt, true)
		if err != nil {
			return err
		}
		props.ReplyTo = q.Name()
	}
	m := &broker.Message{Exchange: d.name, RoutingKey: d.key, Properties: props, Body: f.Body}
	exchange := d.name
	if d.kind != destTopic && d.kind != destExchange {
		exchange = ""
	}
	if err := c.allowPublish(exchange, d.key); err != nil {
		return err
	}
	switch d.kind {
	case destQueue:
		if _, err := c.ensureQueue(d.name, f); err != nil {
			return err
		}
		m.Exchange = ""
	case destAMQQueue, destReplyQueue:
		if _, err := c.vhost.Queue(d.name); err != nil {
			return err
		}
		m.Exchange = ""
	case destTempQueue:
		q, err := c.tempQueue(d.name, false)
		if err != nil {
			return err
		}
		m.Exchange, m.RoutingKey = "", q.Name()
	}
	if !c.rate.Wait(c.closing) {
		return nil // closing: the connection is going away
	}
	if _, err := c.pub.Publish(m); err != nil {
		return err
	}
	if err := c.pub.RefusedError(); err != nil {
		return err // an ERROR frame, as RabbitMQ's STOMP plugin on a nack
	}
	c.reg.CountPublish()
	if c.pub.Congested() {
		c.pub.WaitFlow(c.closing, c.owner)
	}
	return nil
}

// ensureQueue finds /queue/ x or declares it as RabbitMQ does (durable,
// not exclusive, not auto-delete unless the frame's headers say so). An
// existing queue is used as it is, whoever declared it.
func (c *conn) ensureQueue(name string, f *frame.Frame) (*broker.Queue, error) {
	if q, err := c.vhost.UsableQueue(name, c.owner); err == nil {
		return q, nil
	} else if !errors.Is(err, broker.ErrNotFound) {
		return nil, err
	}
	args, err := queueArgs(f)
	if err != nil {
		return nil, err
	}
	if err := c.allow(auth.Configure, auth.Queue, name); err != nil {
		return nil, err
	}
	return c.vhost.DeclareQueue(name, broker.QueueOptions{
		Durable:    headerBool(f, "durable", true),
		AutoDelete: headerBool(f, "auto-delete", false),
		Exclusive:  headerBool(f, "exclusive", false),
		Args:       args,
		Owner:      c.owner,
	})
}

// queueArgHeaders are the x- headers RabbitMQ's plugin passes on as queue
// arguments when a frame declares a queue, and whether each is a number.
var queueArgHeaders = map[string]bool{
	"x-message-ttl": true, "x-expires": true, "x-max-length": true, "x-max-length-bytes": true,
	"x-max-priority": true, "x-delivery-limit": true,
	"x-dead-letter-exchange": false, "x-dead-letter-routing-key": false, "x-overflow": false,
	"x-queue-mode": false, "x-queue-type": false, "x-single-active-consumer": false,
}

func queueArgs(f *frame.Frame) (broker.Table, error) {
	var args broker.Table
	for _, h := range f.Headers {
		numeric, ok := queueArgHeaders[h.Key]
		if !ok {
			continue
		}
		if args == nil {
			args = make(broker.Table)
		}
		if _, dup := args[h.Key]; dup {
			continue // the first of repeated headers wins
		}
		switch {
		case numeric:
			n, err := strconv.ParseInt(h.Value, 10, 64)
			if err != nil {
				return nil, errorf("Invalid header", "%s must be an integer, got '%s'", h.Key, h.Value)
			}
			args[h.Key] = n
		case h.Key == "x-single-active-consumer":
			args[h.Key] = h.Value == "true"
		default:
			args[h.Key] = h.Value
		}
	}
	return args, nil
}

func headerBool(f *frame.Frame, key string, def bool) bool {
	switch f.Value(key) {
	case "true":
		return true
	case "false":
		return false
	}
	return def
}
