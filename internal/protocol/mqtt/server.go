// Package mqtt is Herald's MQTT 3.1.1 and 5.0 adapter. It maps MQTT onto
// the core as RabbitMQ's MQTT plugin does: a session is a queue
// (mqtt-subscription-<client id>qos0 for a clean session, a durable
// mqtt-subscription-<client id>qos1 for a persistent one), a subscription is
// a binding of that queue to amq.topic (topic a/b/c = routing key a.b.c,
// '+' = '*', '#' stays, '.' and '/' swapped), and retained messages and
// wills are kept per vhost (retained messages in the core's per-vhost
// store, durable with a message log; see persist.go).
//
// Each connection has a read loop (the ServeConn goroutine) and, while
// there is something to write, a writer goroutine draining a bounded
// outbox, which also turns queue deliveries into PUBLISH packets (so the
// queue's lock is never held across a blocking write; a sparse delivery to
// an idle plain-TCP connection is written at once with one non-blocking
// write, see deliverInline). Read and write buffers are pooled
// and held only during bursts. An idle plain-TCP connection has no
// goroutine at all: after ParkAfter of silence its reader exits and the
// connection waits in a kit.IdlePoller until its next bytes or its
// keep-alive deadline (see docs/architecture.md "Idle connections"), and
// so does one over WebSocket on plain TCP (its TCP socket is watched, and
// it parks only when neither its reader nor the WebSocket's holds a byte);
// over TLS it keeps its reader, waiting in a shallow frame.
package mqtt

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// Config tunes the MQTT listener. Zero values take the defaults.
type Config struct {
	// MaxPacketSize bounds an inbound packet (v5 CONNACK Maximum Packet Size).
	MaxPacketSize int
	// MaxKeepAlive caps the client's keep-alive; a v5 client asking for
	// more (or 0) is told the cap with Server Keep Alive. 0 = no cap.
	MaxKeepAlive time.Duration
	// ConnectTimeout bounds the time from accept to CONNECT.
	ConnectTimeout time.Duration
	// TopicAliasMaximum is the number of inbound topic aliases a v5 client
	// may use.
	TopicAliasMaximum uint16
	// V3InFlight is the delivery window (consumer prefetch) for 3.1.1
	// clients, which have no Receive Maximum.
	V3InFlight int
	// MaxSessionExpiry caps a v5 Session Expiry Interval. 0 = no cap.
	MaxSessionExpiry time.Duration
	// WriteTimeout bounds one write to a client that stopped reading.
	WriteTimeout time.Duration
	// MaxPublishRate limits each connection to this many PUBLISH packets a
	// second; beyond it the read loop waits (TCP push-back). 0 = no limit.
	MaxPublishRate int
	// ReceiveMaximum is the server's v5 Receive Maximum, sent in CONNACK:
	// how many QoS 1 and 2 PUBLISH packets a client may have unacknowledged
	// (no PUBACK, or no PUBCOMP yet); one more is answered with DISCONNECT
	// 0x93 (Receive Maximum exceeded).
	ReceiveMaximum uint16
	// DenyAnonymous refuses a CONNECT without a user name (v5 0x86, 3.1.1
	// 0x04). By default such a client logs in as AnonymousUser, as
	// RabbitMQ's plugin does (mqtt.allow_anonymous, mqtt.default_user) and
	// as mosquitto does on a local listener.
	DenyAnonymous bool
	// Counters, when set, count connections opened and closed (label mqtt,
	// or mqtt-ws over WebSocket), refused logins and connections closed for
	// a protocol violation.
	Counters *metrics.Counters
	// AnonymousUser is the user a CONNECT without a user name logs in as
	// (no password checked; the user must exist and, if it is a loopback
	// user, connect from localhost). "" means guest.
	AnonymousUser string
	// ParkAfter is how long a plain-TCP connection (or WebSocket over
	// plain TCP) may stay silent before
	// its reader goroutine exits and the connection waits in the idle
	// poller (kit.IdlePoller) until its next bytes or its keep-alive
	// deadline. 0 means DefaultParkAfter; negative never parks.
	ParkAfter time.Duration
}

// Defaults.
const (
	DefaultMaxPacketSize     = 16 << 20
	DefaultConnectTimeout    = 10 * time.Second
	DefaultTopicAliasMaximum = 64
	DefaultV3InFlight        = 100
	DefaultWriteTimeout      = 30 * time.Second
	// DefaultReceiveMaximum bounds a client's unacknowledged QoS 1/2
	// publishes. Herald answers a QoS 1 PUBLISH as soon as it is routed, so
	// what piles up is QoS 2 awaiting PUBREL (packet ids the session keeps);
	// 1024 leaves pipelining clients room while bounding that state (the
	// protocol's default, no property, would be 65535).
	DefaultReceiveMaximum = 1024
	// DefaultParkAfter: a connection silent for a second is an idle one
	// (a device waiting for pushes); one that talks more often keeps its
	// reader goroutine, so its reads cost what they cost before.
	DefaultParkAfter = time.Second
)

func (c *Config) setDefaults() {
	if c.MaxPacketSize <= 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.TopicAliasMaximum == 0 {
		c.TopicAliasMaximum = DefaultTopicAliasMaximum
	}
	if c.V3InFlight <= 0 {
		c.V3InFlight = DefaultV3InFlight
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = DefaultReceiveMaximum
	}
	if c.AnonymousUser == "" {
		c.AnonymousUser = "guest"
	}
	if c.ParkAfter == 0 {
		c.ParkAfter = DefaultParkAfter
	}
}

// Handler serves MQTT connections against a broker. It owns the state that
// outlives a connection: sessions (subscriptions of persistent sessions,
// also stored durably in the core), delayed wills and session-expiry
// timers. Retained messages are kept by the core, per vhost.
type Handler struct {
	cfg    Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger

	// Buffers lent to connections only while they read or write a burst,
	// so that idle connections hold none.
	readBufs  readBufPool
	writeBufs sync.Pool // *[]byte
	// acker settles deliveries written inline (deliver.go).
	acker acker
	// pubs is the QoS 0 PUBLISH of the message being broadcast, encoded
	// once for all its subscribers (pubcache.go).
	pubs pubCache
	// wsPool lends the /mqtt WebSockets their buffers (ws.go).
	wsPool wsconn.Pool
	// poller holds idle plain-TCP connections without a goroutine.
	poller *kit.IdlePoller
	// life scopes the MQTT-over-WebSocket connections, which outlive
	// their HTTP request once they park: Close ends it (endLife) and
	// waits for them (wsConns).
	life    context.Context
	endLife context.CancelFunc
	wsConns sync.WaitGroup

	mu       sync.Mutex             // guards everything below
	conns    map[string]*conn       // by session key (vhost + client id)
	sessions map[string]*session    // by session key
	expiry   map[string]*time.Timer // session expiry timers
	wills    map[string]*time.Timer // delayed wills
	closed   bool
	// watches: the contexts whose end shuts connections down, with the
	// one context.AfterFunc per context that does it (every plain
	// connection shares the listeners' context, so this costs one entry
	// where a watch per connection would cost one each).
	watches map[context.Context]*shutdownWatch
}

// shutdownWatch counts the connections served under one context. They
// are found in conns when it ends (c.ctx), not kept in a set of their
// own: an entry per idle connection would cost it some 80 bytes.
type shutdownWatch struct {
	n    int
	stop func() bool
}

// watchShutdown kicks c (v5 DISCONNECT 0x8B) when ctx ends;
// unwatchShutdown(ctx) stops that (no closure per connection to say so).
func (h *Handler) watchShutdown(ctx context.Context, c *conn) {
	h.mu.Lock()
	w := h.watches[ctx]
	if w == nil {
		w = &shutdownWatch{}
		h.watches[ctx] = w
		w.stop = context.AfterFunc(ctx, func() {
			// Every connection that watches is in conns: it registered
			// in its handshake, before, and unregisters in its teardown,
			// after its watch stops (a connection taken over has left
			// conns, but it is being closed already).
			h.mu.Lock()
			var cs []*conn
			for _, c := range h.conns {
				if c.ctx == ctx {
					cs = append(cs, c)
				}
			}
			h.mu.Unlock()
			for _, c := range cs {
				c.kick(packet.ServerShuttingDown)
			}
		})
	}
	w.n++
	h.mu.Unlock()
	if ctx.Err() != nil {
		// The context ended before c joined: the watch may have kicked the
		// others without it.
		c.kick(packet.ServerShuttingDown)
	}
}

// unwatchShutdown ends a watchShutdown of a connection served under ctx.
func (h *Handler) unwatchShutdown(ctx context.Context) {
	h.mu.Lock()
	if w := h.watches[ctx]; w != nil {
		w.n--
		if w.n == 0 {
			delete(h.watches, ctx)
			w.stop()
		}
	}
	h.mu.Unlock()
}

// NewHandler returns a handler for accepted MQTT connections.
func NewHandler(cfg Config, b *broker.Broker, users *auth.Users, log *slog.Logger) *Handler {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg: cfg, broker: b, users: users, log: log,
		conns:    make(map[string]*conn),
		sessions: make(map[string]*session),
		expiry:   make(map[string]*time.Timer),
		wills:    make(map[string]*time.Timer),
		watches:  make(map[context.Context]*shutdownWatch),
		poller:   kit.NewIdlePoller(log),
	}
	h.life, h.endLife = context.WithCancel(context.Background())
	h.writeBufs.New = func() any {
		b := make([]byte, 0, writeBufSize)
		return &b
	}
	return h
}

// ServeConn runs one MQTT connection until it ends. When ctx is cancelled,
// v5 clients get DISCONNECT 0x8B (server shutting down) and v3 clients are
// closed.
func (h *Handler) ServeConn(ctx context.Context, nc net.Conn) {
	done := make(chan struct{})
	h.ServeConnDetached(ctx, nc, func() { close(done) })
	<-done
}

// ServeConnDetached runs one MQTT connection like ServeConn, but returns
// as soon as the connection parks (idle, plain TCP: no goroutine serves it
// until it has bytes to read) or ends; ended runs once it has ended.
func (h *Handler) ServeConnDetached(ctx context.Context, nc net.Conn, ended func()) {
	h.serveConn(ctx, nc, ended)
}

// serveConn runs a connection (MQTT over WebSocket when nc is a
// wsconn NetConn: see conn.label).
func (h *Handler) serveConn(ctx context.Context, nc net.Conn, ended func()) {
	c := newConn(h, nc)
	h.cfg.Counters.ConnOpened(c.label())
	c.serve(ctx, ended) // closeSocket counts the close
}

// Close stops the Handler's timers (session expiry, delayed wills). Call it
// after the listeners have stopped and their connections have ended.
func (h *Handler) Close() {
	// The WebSocket connections first: they see the end of life as a
	// shutdown (v5 DISCONNECT 0x8B), and a parked one is woken to end.
	h.mu.Lock()
	h.endLife()
	h.mu.Unlock()
	h.wsConns.Wait()
	h.mu.Lock()
	h.closed = true
	for k, t := range h.expiry {
		t.Stop()
		delete(h.expiry, k)
	}
	for k, t := range h.wills {
		t.Stop()
		delete(h.wills, k)
	}
	h.mu.Unlock()
	h.poller.Close()
	h.acker.wg.Wait()
}

// ConnectionCount is the number of connected MQTT clients.
func (h *Handler) ConnectionCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// register makes c the connection of its session key. A connection already
// using the key is taken over: it is told (v5 DISCONNECT 0x8E) and closed,
// and register waits for it to finish its clean-up so the queues it owns
// are gone before the new connection declares its own. Pending timers for
// the key (delayed will, session expiry) are stopped: the client is back.
func (h *Handler) register(c *conn) {
	for {
		h.mu.Lock()
		old := h.conns[c.key]
		if old == nil {
			h.conns[c.key] = c
			if t := h.wills[c.key]; t != nil {
				t.Stop()
				delete(h.wills, c.key)
			}
			if t := h.expiry[c.key]; t != nil {
				t.Stop()
				delete(h.expiry, c.key)
			}
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		old.kick(packet.SessionTakenOver)
		<-old.done
	}
}

func (h *Handler) unregister(c *conn) {
	h.mu.Lock()
	if h.conns[c.key] == c {
		delete(h.conns, c.key)
	}
	h.mu.Unlock()
}

// session returns the session state of c, creating it if there is none:
// empty, or for a resumed persistent session the Handler has not seen
// since it started, loaded from the session's durable record.
func (h *Handler) session(c *conn, resumed bool) *session {
	h.mu.Lock()
	s := h.sessions[c.key]
	h.mu.Unlock()
	if s != nil {
		return s
	}
	if resumed {
		s = c.loadSession()
	} else {
		s = newSession()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := h.sessions[c.key]; cur != nil {
		return cur
	}
	h.sessions[c.key] = s
	return s
}

// dropSession forgets a session: its state here and its durable record.
func (h *Handler) dropSession(v *broker.VHost, clientID string) {
	shared := h.sessionSharedQueues(v, clientID)
	h.mu.Lock()
	delete(h.sessions, v.Name()+"\x00"+clientID)
	h.mu.Unlock()
	v.SessionState().Delete(sessionRecordKey(clientID))
	h.releaseShared(v, shared)
}

// expireLater deletes a persistent session after d, unless its client comes
// back first (register stops the timer).
func (h *Handler) expireLater(key string, v *broker.VHost, clientID string, d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if t := h.expiry[key]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		h.mu.Lock()
		if h.expiry[key] != t || h.conns[key] != nil {
			h.mu.Unlock()
			return
		}
		delete(h.expiry, key)
		h.mu.Unlock()
		v.DeleteQueue(sessionQueueName(clientID, true), 0, false, false)
		h.dropSession(v, clientID)
		h.log.Debug("mqtt session expired", "vhost", v.Name(), "client_id", clientID)
	})
	h.expiry[key] = t
}

// willLater publishes a will after its delay unless the client reconnects.
func (h *Handler) willLater(key string, d time.Duration, publish func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		h.mu.Lock()
		if h.wills[key] != t {
			h.mu.Unlock()
			return
		}
		delete(h.wills, key)
		h.mu.Unlock()
		publish()
	})
	h.wills[key] = t
}

// retain stores (or, with an empty payload, clears [MQTT-3.3.1-10]) the
// retained message of a topic, in the vhost's durable store: the message
// is the one just published (shared, not copied), whatever its QoS.
func (h *Handler) retain(v *broker.VHost, topic string, m *broker.Message) {
	if len(m.Body) == 0 {
		v.Retained().Delete(topic)
		return
	}
	v.Retained().Set(topic, m)
}

// retainedFor lists the retained messages whose topic matches filter;
// expired ones are dropped from the store on the way.
func (h *Handler) retainedFor(v *broker.VHost, filter string) []retainedMsg {
	st := v.Retained()
	now := time.Now()
	var out []retainedMsg
	for _, r := range st.Select(func(topic string) bool { return matchFilter(filter, topic) }) {
		if _, expired, _ := remainingExpiry(r.Message, now); expired {
			st.CompareAndDelete(r.Key, r.Message)
			continue
		}
		out = append(out, retainedMsg{topic: r.Key, msg: r.Message})
	}
	return out
}

type retainedMsg struct {
	topic string
	msg   *broker.Message
}
