package amqp091

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
	"github.com/heraldmq/herald/internal/protocol/kit"
)

// closeTimeout is how long we wait for connection.close-ok or channel
// close-ok before giving up on a peer.
const closeTimeout = 3 * time.Second

// clientCaps are the capabilities a client announced in connection.start-ok.
type clientCaps struct {
	consumerCancelNotify bool
	connectionBlocked    bool
	authFailureClose     bool
}

type conn struct {
	h     *Handler
	nc    net.Conn
	log   *slog.Logger
	fr    *frame.Reader
	fw    *frame.Writer
	out   *outbox
	owner broker.Owner
	vhost *broker.VHost
	user  string
	caps  clientCaps
	reg   *broker.Connection // in the broker's connection registry
	// admitted releases the connection's slot in the broker's connection
	// limits; set once connection.open passed them.
	admitted func()
	rate     *broker.PublishLimiter // nil: no --max-publish-rate

	loginState // who logged in, the permissions checked, a token's expiry (token.go)

	frameMax   uint32
	channelMax uint16
	heartbeat  time.Duration

	// clientProps is connection.start-ok's client-properties, for the
	// management API (connection_name among them).
	clientProps frame.Table

	// Read-loop state.
	channels       map[uint16]*channel
	methodMemo     frame.Memo // the previous method's short strings (a publish's routing key), to share
	lastCh         *channel   // the channel of the previous frame: most frames follow one on the same channel
	pendingConfirm []*channel // channels with confirms to flush before blocking
	congested      []*channel // channels whose publishes outran a queue's consumers
	stopping       <-chan struct{}
	closing        atomic.Bool
	closeDeadline  time.Time
	readDeadline   time.Time // as last set on the socket
	done           chan struct{}

	// A copy of the channels map for the management API (channelList),
	// which runs outside the read loop; the read loop refreshes it when a
	// channel opens or closes, so the hot path never takes chMu.
	chMu   sync.Mutex
	chSnap []*channel

	// Writer scratch: reused so that writing a delivery allocates nothing.
	deliver frame.BasicDeliver
	getOk   frame.BasicGetOk
	ret     frame.BasicReturn
	ack     frame.BasicAck
	nack    frame.BasicNack
	props   frame.Properties

	// writeDeadline is the socket's write deadline, renewed lazily by
	// the writer (extendWriteDeadline); writer goroutine only.
	writeDeadline time.Time
}

func newConn(h *Handler, nc net.Conn) *conn {
	return &conn{
		h:        h,
		nc:       nc,
		log:      h.log.With("remote", nc.RemoteAddr().String()),
		fr:       frame.NewReader(nc, h.cfg.FrameMax),
		fw:       frame.NewWriter(nc),
		out:      newOutbox(),
		owner:    h.broker.NewOwner(),
		channels: make(map[uint16]*channel),
		done:     make(chan struct{}),
		frameMax: h.cfg.FrameMax,
		rate:     h.broker.NewPublishLimiter(h.cfg.MaxPublishRate),
	}
}

// abort tears the socket down; the read loop then ends.
func (c *conn) abort() { _ = c.nc.Close() }

func (c *conn) serve(ctx context.Context) {
	defer close(c.done)
	defer c.nc.Close()
	defer func() {
		if c.admitted != nil {
			c.admitted()
		}
	}()
	if err := c.handshake(); err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, errLoginRefused) {
			c.log.Info("amqp handshake failed", "err", err)
		}
		return
	}
	c.stopping = ctx.Done()
	c.log = c.log.With("user", c.user, "vhost", c.vhost.Name())
	defer c.watchExpiry()()
	c.log.Debug("amqp connection open", "heartbeat", c.heartbeat, "frame_max", c.frameMax)
	var unregister func()
	c.reg, unregister = c.h.broker.RegisterConnection(broker.ConnectionInfo{Protocol: "AMQP 0-9-1", User: c.user, VHost: c.vhost.Name(),
		Peer: c.nc.RemoteAddr().String(), Local: c.nc.LocalAddr().String(), Owner: c.owner, Close: c.forceClose,
		ChannelList: c.channelList, ClientProperties: c.clientProps})
	defer unregister()
	// open-ok only now: a client that lists connections (or is closed by
	// name) right after opening must find itself in the registry.
	if err := c.writeNow(&frame.ConnectionOpenOk{}); err != nil {
		return
	}

	stop := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writerLoop(stop)
	}()
	go func() {
		select {
		case <-ctx.Done():
			c.forceClose("broker forced connection closure with reason 'shutdown'")
		case <-c.done:
		}
	}()

	err := c.readLoop()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Info("amqp connection ended", "err", err)
	}
	c.teardown()
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	close(stop)
	<-writerDone
}

// teardown releases everything the connection holds in the broker:
// consumers are cancelled, unacked deliveries requeued, exclusive queues deleted.
func (c *conn) teardown() {
	c.out.mu.Lock()
	c.out.closed = true
	c.out.mu.Unlock()
	for _, ch := range c.channels {
		ch.release()
	}
	c.channels = nil
	c.channelsChanged()
	c.h.broker.ReleaseOwner(c.owner)
}

// forceClose starts a server-initiated close (320 CONNECTION_FORCED)
// because the server is shutting down or an operator closed the
// connection; it runs outside the read loop.
func (c *conn) forceClose(reason string) {
	if c.closing.Swap(true) {
		return
	}
	c.out.push(outItem{kind: itemMethod, method: &frame.ConnectionClose{ReplyCode: frame.ConnectionForced, ReplyText: replyText(frame.ConnectionForced, reason)}})
	_ = c.nc.SetReadDeadline(time.Now().Add(closeTimeout))
	t := time.AfterFunc(closeTimeout, c.abort)
	go func() { <-c.done; t.Stop() }()
}

// beginClose sends connection.close for a connection-level error and
// waits (in the read loop) for close-ok.
func (c *conn) beginClose(e *amqpError) {
	if c.closing.Swap(true) {
		return
	}
	c.log.Info("closing amqp connection", "code", e.code, "reason", e.text)
	c.countViolation(e.code)
	c.out.push(outItem{kind: itemMethod, method: &frame.ConnectionClose{ReplyCode: e.code, ReplyText: replyText(e.code, e.text), FailingClassID: e.classID, FailingMethodID: e.methodID}})
	c.closeDeadline = time.Now().Add(closeTimeout)
}

// refreshReadDeadline arms the heartbeat timeout before the read loop
// blocks. Re-arming costs a timer update, so it is done only when the
// deadline has aged by half an interval: a silent peer is dropped after
// between two and two and a half heartbeat intervals.
func (c *conn) refreshReadDeadline() error {
	switch {
	case c.closing.Load():
		if c.closeDeadline.IsZero() {
			c.closeDeadline = time.Now().Add(closeTimeout)
		}
		if c.readDeadline != c.closeDeadline {
			c.readDeadline = c.closeDeadline
			return c.nc.SetReadDeadline(c.closeDeadline)
		}
	case c.heartbeat > 0:
		now := time.Now()
		if c.readDeadline.Sub(now) < 2*c.heartbeat {
			c.readDeadline = now.Add(2*c.heartbeat + c.heartbeat/2)
			return c.nc.SetReadDeadline(c.readDeadline)
		}
	}
	return nil
}

// busyFrames bounds how many frames the read loop handles while input is
// still buffered before it flushes confirms and re-arms the heartbeat
// deadline anyway: a publisher that never lets the buffer drain must not
// look silent (the deadline still guards the socket reads) nor wait for
// its confirms.
const busyFrames = 1024

func (c *conn) readLoop() error {
	frames := 0
	for {
		if frames++; c.fr.Buffered() == 0 || frames >= busyFrames {
			frames = 0
			c.flushConfirms()
			if err := c.refreshReadDeadline(); err != nil {
				return err
			}
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.closing.Load() {
				c.log.Info("amqp client missed heartbeats; closing", "heartbeat", c.heartbeat)
				return fmt.Errorf("missed heartbeats: no frame for %v", 2*c.heartbeat)
			}
			if isFrameError(err) {
				c.beginClose(connectionError(frame.FrameError, nil, "%v", err))
				c.flushNow()
			}
			return err
		}
		done, err := c.handleFrame(f)
		if err != nil {
			var ae *amqpError
			if !errors.As(err, &ae) {
				return err
			}
			if ae.conn {
				c.beginClose(ae)
			} else if ch := c.channel(f.Channel); ch != nil {
				ch.fail(ae)
			}
		}
		if done {
			return nil
		}
		if len(c.congested) > 0 {
			c.waitFlow()
			// The time spent not reading on purpose is not the client's
			// silence: its heartbeats wait behind the publishes held in
			// the socket. The deadline starts again (RabbitMQ pauses its
			// heartbeat monitor while it blocks a connection); without
			// this a publisher held back for 2.5 heartbeat intervals (a
			// memory alarm, a consumer that stopped reading) was closed
			// for "missed heartbeats".
			frames = busyFrames
		}
	}
}

// waitFlow stops reading from this client while a queue it feeds is
// behind its consumers: TCP push-back for this connection only.
func (c *conn) waitFlow() {
	c.flushConfirms()
	blocked := false
	if alarms := c.h.broker.Alarms(); len(alarms) > 0 {
		// A resource alarm: tell clients that understand it why we stopped
		// reading (RabbitMQ's connection.blocked), then wait for it to clear.
		c.log.Info("publishing connection blocked by a resource alarm", "alarms", alarms)
		if c.caps.connectionBlocked {
			c.out.push(outItem{kind: itemMethod, method: &frame.ConnectionBlocked{Reason: "low on " + strings.Join(alarms, " and ")}})
			blocked = true
		}
	}
	for _, ch := range c.congested {
		ch.pub.WaitFlow(c.stopping, c.owner)
	}
	if blocked {
		c.out.push(outItem{kind: itemMethod, method: &frame.ConnectionUnblocked{}})
	}
	clear(c.congested)
	c.congested = c.congested[:0]
}

// flushNow pushes what is queued to the socket synchronously; used only
// right before dropping a connection whose framing is broken.
func (c *conn) flushNow() {
	select {
	case <-c.out.drained:
	case <-time.After(100 * time.Millisecond):
	}
}

func (c *conn) flushConfirms() {
	for _, ch := range c.pendingConfirm {
		ch.flushConfirms()
	}
	c.pendingConfirm = c.pendingConfirm[:0]
}

// handleFrame runs one frame through the state machines. done means the
// connection has finished its close handshake.
func (c *conn) handleFrame(f frame.Frame) (done bool, err error) {
	switch f.Type {
	case frame.TypeHeartbeat:
		if f.Channel != 0 {
			return false, connectionError(frame.FrameError, nil, "heartbeat frame on channel %d; heartbeats belong on channel 0", f.Channel)
		}
		return false, nil
	case frame.TypeMethod:
		// A basic.publish or basic.ack from the memo is reused by the next
		// frame: handlers use a method's fields and never keep the method.
		m, err := frame.DecodeMethodMemo(f.Payload, &c.methodMemo)
		if err != nil {
			if c.closing.Load() {
				return false, nil
			}
			if errors.Is(err, frame.ErrUnknownMethod) {
				return false, connectionError(frame.NotImplemented, nil, "%v", err)
			}
			return false, connectionError(frame.SyntaxError, nil, "malformed method frame on channel %d: %v", f.Channel, err)
		}
		if f.Channel == 0 {
			return c.handleConnectionMethod(m)
		}
		if c.closing.Load() {
			return false, nil
		}
		return false, c.handleChannelMethod(f.Channel, m)
	case frame.TypeHeader, frame.TypeBody:
		if c.closing.Load() {
			return false, nil
		}
		if f.Channel == 0 {
			return false, connectionError(frame.UnexpectedFrame, nil, "content frame on channel 0")
		}
		ch := c.channel(f.Channel)
		if ch == nil {
			return false, connectionError(frame.ChannelError, nil, "content frame on channel %d, which is not open", f.Channel)
		}
		return false, ch.handleContent(f)
	}
	return false, connectionError(frame.FrameError, nil, "unknown frame type %d", f.Type)
}

func (c *conn) handleConnectionMethod(m frame.Method) (bool, error) {
	switch m := m.(type) {
	case *frame.ConnectionClose:
		c.log.Debug("client closed amqp connection", "code", m.ReplyCode, "reason", m.ReplyText)
		c.out.push(outItem{kind: itemMethod, method: &frame.ConnectionCloseOk{}})
		return true, nil
	case *frame.ConnectionCloseOk:
		if c.closing.Load() {
			return true, nil
		}
		return false, connectionError(frame.CommandInvalid, m, "unexpected connection.close-ok")
	case *frame.ConnectionUpdateSecret:
		if !c.closing.Load() {
			return false, c.updateSecret(m)
		}
	}
	if c.closing.Load() {
		return false, nil
	}
	return false, connectionError(frame.CommandInvalid, m, "unexpected %s on channel 0 after the connection was opened", m.Name())
}

func (c *conn) handleChannelMethod(n uint16, m frame.Method) error {
	ch := c.channel(n)
	if open, ok := m.(*frame.ChannelOpen); ok {
		_ = open
		if ch != nil {
			return connectionError(frame.ChannelError, m, "second 'channel.open' seen on channel %d", n)
		}
		if n > c.channelMax {
			return connectionError(frame.NotAllowed, m, "channel number %d exceeds the negotiated channel_max %d", n, c.channelMax)
		}
		c.channels[n] = newChannel(c, n)
		c.channelsChanged()
		c.out.push(outItem{kind: itemMethod, channel: n, method: &frame.ChannelOpenOk{}})
		return nil
	}
	if ch == nil {
		return connectionError(frame.ChannelError, m, "expected 'channel.open' on channel %d before %s", n, m.Name())
	}
	if !ch.closing && ch.timedOut.Load() {
		// The consumer timeout already sent channel.close.
		ch.closing = true
		ch.release()
	}
	if ch.closing {
		switch m.(type) {
		case *frame.ChannelCloseOk:
			delete(c.channels, n)
			c.channelsChanged()
		case *frame.ChannelClose:
			c.out.push(outItem{kind: itemMethod, channel: n, method: &frame.ChannelCloseOk{}})
		}
		return nil
	}
	return ch.handleMethod(m)
}

// handshake negotiates the protocol header, authentication, tuning and the
// virtual host, writing synchronously (the writer goroutine starts after);
// serve answers connection.open with open-ok once it has registered the
// connection.
func (c *conn) handshake() error {
	cfg := c.h.cfg
	_ = c.nc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	defer c.nc.SetDeadline(time.Time{})

	if err := frame.ReadProtocolHeader(c.nc); err != nil {
		// The spec's answer to a header we do not speak: ours, then close.
		_, _ = c.nc.Write(frame.ProtocolHeader[:])
		if errors.Is(err, frame.ErrBadProtocolHeader) {
			c.h.cfg.Counters.ProtocolError(metrics.ProtocolAMQP)
		}
		return err
	}
	host, _ := os.Hostname()
	// EXTERNAL (the TLS client certificate's CN is the user) is offered
	// only where it can succeed: a TLS connection whose client presented a
	// certificate that verified against --tls-client-ca.
	certUser := kit.VerifiedCertCN(c.nc)
	mechanisms := "PLAIN AMQPLAIN"
	if certUser != "" {
		mechanisms = "EXTERNAL PLAIN AMQPLAIN"
	}
	start := &frame.ConnectionStart{
		VersionMajor: 0,
		VersionMinor: 9,
		ServerProperties: frame.Table{
			"product":      "Herald",
			"version":      cfg.Version,
			"platform":     "Go",
			"copyright":    "Herald authors",
			"information":  "Herald message broker; AMQP 0-9-1, MQTT, STOMP and WebSocket in one binary",
			"cluster_name": "herald@" + host,
			"capabilities": frame.Table{
				"publisher_confirms":           true,
				"exchange_exchange_bindings":   true,
				"basic.nack":                   true,
				"consumer_cancel_notify":       true,
				"connection.blocked":           true,
				"authentication_failure_close": true,
				"per_consumer_qos":             true,
				"direct_reply_to":              true,
			},
		},
		Mechanisms: mechanisms,
		Locales:    "en_US",
	}
	if err := c.writeNow(start); err != nil {
		return err
	}

	m, err := c.readHandshakeMethod()
	if err != nil {
		return err
	}
	startOk, ok := m.(*frame.ConnectionStartOk)
	if !ok {
		return c.refuse(frame.CommandInvalid, m, "expected connection.start-ok, got %s", m.Name())
	}
	c.clientProps = startOk.ClientProperties
	if caps, ok := startOk.ClientProperties["capabilities"].(frame.Table); ok {
		c.caps.consumerCancelNotify, _ = caps["consumer_cancel_notify"].(bool)
		c.caps.connectionBlocked, _ = caps["connection.blocked"].(bool)
		c.caps.authFailureClose, _ = caps["authentication_failure_close"].(bool)
	}
	var user string
	var login *auth.User
	if startOk.Mechanism == "EXTERNAL" && certUser != "" {
		user, err = c.externalLogin(certUser)
	} else {
		var pass string
		if user, pass, err = parseCredentials(startOk.Mechanism, startOk.Response); err != nil {
			c.h.cfg.Counters.AuthFailed(metrics.ProtocolAMQP)
			return c.refuse(frame.AccessRefused, m, "%v", err)
		}
		login, err = c.h.users.Authenticate(user, pass, c.nc.RemoteAddr())
	}
	if err != nil {
		c.h.cfg.Counters.AuthFailed(metrics.ProtocolAMQP)
		c.log.Info("amqp login refused", "user", user, "mechanism", startOk.Mechanism, "err", err)
		text := fmt.Sprintf("Login was refused using authentication mechanism %s. For details see the broker logfile.", startOk.Mechanism)
		if c.caps.authFailureClose {
			return loggedRefusal(c.refuse(frame.AccessRefused, m, "%s", text))
		}
		return loggedRefusal(errors.New(text))
	}
	c.user = user
	if login != nil {
		c.setLogin(login) // a token's user replaces the name sent
	}

	tune := &frame.ConnectionTune{ChannelMax: cfg.ChannelMax, FrameMax: cfg.FrameMax, Heartbeat: uint16(cfg.Heartbeat / time.Second)}
	if err := c.writeNow(tune); err != nil {
		return err
	}
	m, err = c.readHandshakeMethod()
	if err != nil {
		return err
	}
	tuneOk, ok := m.(*frame.ConnectionTuneOk)
	if !ok {
		return c.refuse(frame.CommandInvalid, m, "expected connection.tune-ok, got %s", m.Name())
	}
	switch {
	case tuneOk.FrameMax != 0 && tuneOk.FrameMax < frame.MinSize:
		return c.refuse(frame.NotAllowed, m, "frame_max=%d < %d min size", tuneOk.FrameMax, frame.MinSize)
	case tuneOk.FrameMax > cfg.FrameMax:
		return c.refuse(frame.NotAllowed, m, "frame_max=%d > %d max size", tuneOk.FrameMax, cfg.FrameMax)
	case tuneOk.ChannelMax > cfg.ChannelMax:
		return c.refuse(frame.NotAllowed, m, "channel_max=%d > %d max", tuneOk.ChannelMax, cfg.ChannelMax)
	}
	c.frameMax = cfg.FrameMax
	if tuneOk.FrameMax != 0 {
		c.frameMax = tuneOk.FrameMax
	}
	c.fr.SetMaxFrameSize(c.frameMax)
	c.channelMax = cfg.ChannelMax
	if tuneOk.ChannelMax != 0 {
		c.channelMax = tuneOk.ChannelMax
	}
	c.heartbeat = time.Duration(tuneOk.Heartbeat) * time.Second

	m, err = c.readHandshakeMethod()
	if err != nil {
		return err
	}
	open, ok := m.(*frame.ConnectionOpen)
	if !ok {
		return c.refuse(frame.CommandInvalid, m, "expected connection.open, got %s", m.Name())
	}
	vhost := c.h.broker.VHost(open.VirtualHost)
	if vhost == nil {
		return c.refuse(frame.NotAllowed, m, "vhost %s not found", open.VirtualHost)
	}
	// RabbitMQ answers a login without permissions in the vhost with
	// 530 NOT_ALLOWED at connection.open.
	if err := c.checker().CheckVHost(c.user, vhost.Name()); err != nil {
		c.log.Info("amqp vhost access refused", "user", c.user, "vhost", vhost.Name())
		return c.refuse(frame.NotAllowed, m, "%s", err.Error())
	}
	release, err := c.h.broker.AdmitConnection(c.user, vhost.Name())
	if err != nil {
		c.log.Info("amqp connection refused by a connection limit", "user", c.user, "vhost", vhost.Name(), "err", err)
		return c.refuse(frame.NotAllowed, m, "%s", fromBroker(err, m).text)
	}
	c.admitted = release
	c.vhost = vhost
	return nil // serve sends connection.open-ok once the connection is registered
}

func (c *conn) writeNow(m frame.Method) error {
	if err := c.fw.WriteMethod(0, m); err != nil {
		return err
	}
	return c.fw.Flush()
}

// refuse closes a connection that is not open yet, with a reason.
func (c *conn) refuse(code uint16, m frame.Method, format string, args ...any) error {
	c.countViolation(code)
	e := connectionError(code, m, format, args...)
	_ = c.writeNow(&frame.ConnectionClose{ReplyCode: e.code, ReplyText: replyText(e.code, e.text), FailingClassID: e.classID, FailingMethodID: e.methodID})
	// Give the client a moment to read the reason and answer close-ok.
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil || f.Type != frame.TypeMethod {
			break
		}
		if mm, err := frame.DecodeMethod(f.Payload); err != nil {
			break
		} else if _, ok := mm.(*frame.ConnectionCloseOk); ok {
			break
		}
	}
	return e
}

// isFrameError tells a malformed frame (answered with connection.close
// 501) from a failed read (nobody left to answer).
func isFrameError(err error) bool {
	return errors.Is(err, frame.ErrFrameTooLarge) || errors.Is(err, frame.ErrBadFrameEnd) || errors.Is(err, frame.ErrUnknownFrameType)
}

func (c *conn) readHandshakeMethod() (frame.Method, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if isFrameError(err) {
				// As after the handshake: the client hears why (501).
				return nil, c.refuse(frame.FrameError, nil, "%v", err)
			}
			return nil, err
		}
		switch {
		case f.Type == frame.TypeHeartbeat:
			continue
		case f.Type != frame.TypeMethod || f.Channel != 0:
			return nil, c.refuse(frame.UnexpectedFrame, nil, "expected a method frame on channel 0 during the handshake")
		}
		m, err := frame.DecodeMethod(f.Payload)
		if err != nil {
			return nil, c.refuse(frame.SyntaxError, nil, "%v", err)
		}
		if cl, ok := m.(*frame.ConnectionClose); ok {
			_ = c.writeNow(&frame.ConnectionCloseOk{})
			return nil, fmt.Errorf("client closed the connection during the handshake: %s", cl.ReplyText)
		}
		return m, nil
	}
}

// externalLogin authenticates SASL EXTERNAL: the certificate vouches for
// the user, who must exist (and, if loopback-only, connect locally).
func (c *conn) externalLogin(cn string) (string, error) {
	u, ok := c.h.users.User(cn)
	switch {
	case !ok:
		return "", fmt.Errorf("user '%s' (client certificate CN) does not exist", cn)
	case u.LoopbackOnly && !kit.IsLoopback(c.nc.RemoteAddr()):
		return "", fmt.Errorf("user '%s' can only connect via localhost", cn)
	}
	return cn, nil
}

// parseCredentials decodes a SASL response for PLAIN or AMQPLAIN.
func parseCredentials(mechanism, response string) (user, pass string, err error) {
	switch mechanism {
	case "PLAIN":
		// authzid NUL authcid NUL password
		parts := strings.Split(response, "\x00")
		if len(parts) != 3 {
			return "", "", errors.New("malformed PLAIN response; expected \\0user\\0password")
		}
		return parts[1], parts[2], nil
	case "AMQPLAIN":
		t, err := frame.DecodeTableContents([]byte(response))
		if err != nil {
			return "", "", fmt.Errorf("malformed AMQPLAIN response: %v", err)
		}
		user, _ = t["LOGIN"].(string)
		pass, _ = t["PASSWORD"].(string)
		if user == "" {
			return "", "", errors.New("AMQPLAIN response has no LOGIN")
		}
		return user, pass, nil
	}
	return "", "", fmt.Errorf("unsupported authentication mechanism '%s'; use PLAIN or AMQPLAIN", mechanism)
}

// channelsChanged publishes the channel count and the channel list after
// the read loop opened or closed a channel.
func (c *conn) channelsChanged() {
	c.lastCh = nil
	c.reg.SetChannels(len(c.channels))
	snap := make([]*channel, 0, len(c.channels))
	for _, ch := range c.channels {
		snap = append(snap, ch)
	}
	slices.SortFunc(snap, func(a, b *channel) int { return cmp.Compare(a.id, b.id) })
	c.chMu.Lock()
	c.chSnap = snap
	c.chMu.Unlock()
}

// channel is c.channels[n] with a one-entry cache in front: a client
// usually sends several frames in a row on one channel (method, header,
// body), and the map's hash of the uint16 key was 4% of the broker's CPU
// under the rpc-sdk benchmark. Read loop only.
func (c *conn) channel(n uint16) *channel {
	if ch := c.lastCh; ch != nil && ch.id == n {
		return ch
	}
	ch := c.channels[n]
	if ch != nil {
		c.lastCh = ch
	}
	return ch
}

// channelList is the registry's ChannelList: it runs on a management
// goroutine, so it reads only what is safe there (the snapshot, the
// channels' atomics, and the fields guarded by ch.mu and c.out.mu, taken
// one at a time, never nested).
func (c *conn) channelList() []broker.ChannelInfo {
	c.chMu.Lock()
	snap := c.chSnap
	c.chMu.Unlock()
	out := make([]broker.ChannelInfo, 0, len(snap))
	for _, ch := range snap {
		ch.mu.Lock()
		consumers := len(ch.consumers)
		ch.mu.Unlock()
		unacked := 0
		c.out.mu.Lock()
		for i := range ch.unacked {
			if !ch.unacked[i].settled {
				unacked++
			}
		}
		c.out.mu.Unlock()
		out = append(out, broker.ChannelInfo{Number: int(ch.id), ConsumerCount: consumers,
			PrefetchCount: int(ch.stats.prefetch.Load()), GlobalPrefetchCount: int(ch.stats.globalPrefetch.Load()),
			UnackedCount: unacked, Confirm: ch.stats.confirm.Load(), Transactional: ch.stats.tx.Load()})
	}
	return out
}

// countViolation counts a connection closed with a hard error that says
// the client broke the protocol (501-505), not one the server refused.
func (c *conn) countViolation(code uint16) {
	switch code {
	case frame.FrameError, frame.SyntaxError, frame.CommandInvalid, frame.ChannelError, frame.UnexpectedFrame:
		c.h.cfg.Counters.ProtocolError(metrics.ProtocolAMQP)
	}
}
