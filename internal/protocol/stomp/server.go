// Package stomp is Herald's STOMP 1.0/1.1/1.2 adapter. It maps STOMP onto
// the broker core the way RabbitMQ's STOMP plugin does: /queue/, /topic/,
// /exchange/, /amq/queue/, /temp-queue/ and /reply-queue/ destinations,
// ack modes auto, client and client-individual, transactions, receipts and
// heart-beats, over TCP and over WebSocket (subprotocols v1x.stomp).
//
// Each connection has a read loop (the ServeConn goroutine), which decodes
// frames and drives the core, and a writer goroutine that drains a bounded
// outbox and writes once per batch (once per frame on WebSocket, where each
// message must carry one frame).
package stomp

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// Config tunes the STOMP listener. Zero values take the defaults.
type Config struct {
	// Heartbeat is what the server offers in CONNECTED's heart-beat header
	// for both directions; the larger of it and the client's wish is used,
	// and a client that asks for none gets none. Negative: the server
	// neither sends nor expects heart-beats.
	Heartbeat time.Duration
	// Limits bound incoming frames (see frame.Limits).
	Limits frame.Limits
	// HandshakeTimeout bounds the time from accept to CONNECT.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a client that stopped reading
	// (0 = DefaultWriteTimeout); past it the connection is closed.
	WriteTimeout time.Duration
	// DefaultVHost is used when CONNECT has no host header (RabbitMQ: "/").
	DefaultVHost string
	// Version is reported in CONNECTED's server header.
	Version string
	// MaxPublishRate limits each connection to this many SENDs a second;
	// beyond it the read loop waits (TCP push-back). 0 = no limit.
	MaxPublishRate int
	// Counters, when set, count connections opened and closed (TCP and
	// WebSocket alike: label stomp), refused logins and connections closed
	// for a protocol violation.
	Counters *metrics.Counters
}

// DefaultHeartbeat is the interval the server offers.
const DefaultHeartbeat = 10 * time.Second

// DefaultWriteTimeout is Config.WriteTimeout's default, MQTT's too.
const DefaultWriteTimeout = 30 * time.Second

func (c *Config) setDefaults() {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	c.Limits = c.Limits.WithDefaults()
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.DefaultVHost == "" {
		c.DefaultVHost = "/"
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// Handler serves STOMP connections against a broker.
type Handler struct {
	cfg    Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger

	conns kit.Registry[*conn]
	// wsPool lends the /stomp WebSockets their buffers (ws.go).
	wsPool wsconn.Pool
}

// NewHandler returns a handler for accepted STOMP connections.
func NewHandler(cfg Config, b *broker.Broker, users *auth.Users, log *slog.Logger) *Handler {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, broker: b, users: users, log: log}
}

// ServeConn runs one TCP connection until it ends. When ctx is cancelled
// the client is sent an ERROR frame "server shutting down" and closed.
func (h *Handler) ServeConn(ctx context.Context, nc net.Conn) {
	h.serve(ctx, nc, false)
}

func (h *Handler) serve(ctx context.Context, nc net.Conn, ws bool) {
	h.cfg.Counters.ConnOpened(metrics.ProtocolSTOMP)
	defer h.cfg.Counters.ConnClosed(metrics.ProtocolSTOMP)
	c := newConn(h, nc, ws)
	defer h.conns.Add(c)()
	c.serve(ctx)
}

// ConnectionCount is the number of open STOMP connections.
func (h *Handler) ConnectionCount() int {
	return h.conns.Len()
}
