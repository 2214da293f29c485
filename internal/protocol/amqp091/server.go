// Package amqp091 is Herald's AMQP 0-9-1 adapter: it speaks RabbitMQ's
// dialect of the protocol (publisher confirms, basic.nack, exchange-to-
// exchange bindings, consumer cancel notifications, direct reply-to) and
// drives the broker core.
//
// Each connection has a read loop (the ServeConn goroutine), which decodes
// frames and runs the connection and channel state machines, and a writer
// goroutine that drains a bounded outbox and flushes once per batch.
package amqp091

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/kit"
)

// Config tunes the AMQP listener. Zero values take the defaults.
type Config struct {
	// Heartbeat is the interval the server proposes in connection.tune;
	// the client's answer wins, and 0 there disables heartbeats.
	Heartbeat time.Duration
	// FrameMax is the largest frame the server accepts and proposes.
	FrameMax uint32
	// ChannelMax is the highest channel number a client may open.
	ChannelMax uint16
	// MaxMessageSize bounds a published message body.
	MaxMessageSize uint64
	// HandshakeTimeout bounds the time from accept to connection.open.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a client that stopped reading
	// (0 = DefaultWriteTimeout); past it the connection is closed.
	WriteTimeout time.Duration
	// Version is reported in the server properties.
	Version string
	// MaxPublishRate limits each connection to this many published
	// messages a second (all its channels together); beyond it the
	// connection stops reading from the client until tokens accrue
	// (TCP push-back, nothing is dropped). 0 means no limit.
	MaxPublishRate int
	// Counters, when set, count connections opened and closed, refused
	// logins and connections closed for a protocol violation (501-505).
	Counters *metrics.Counters
}

// Defaults, as RabbitMQ's.
const (
	DefaultHeartbeat      = 60 * time.Second
	DefaultFrameMax       = 131072
	DefaultChannelMax     = 2047
	DefaultMaxMessageSize = 128 << 20
	DefaultWriteTimeout   = 30 * time.Second
)

func (c *Config) setDefaults() {
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.FrameMax == 0 {
		c.FrameMax = DefaultFrameMax
	}
	if c.ChannelMax == 0 {
		c.ChannelMax = DefaultChannelMax
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// Handler serves AMQP connections against a broker.
type Handler struct {
	cfg    Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger

	conns kit.Registry[*conn]
}

// NewHandler returns a handler for accepted AMQP connections.
func NewHandler(cfg Config, b *broker.Broker, users *auth.Users, log *slog.Logger) *Handler {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, broker: b, users: users, log: log}
}

// ServeConn runs one connection until it ends. When ctx is cancelled the
// client is sent connection.close 320 CONNECTION_FORCED and given a moment
// to answer before the socket is closed.
func (h *Handler) ServeConn(ctx context.Context, nc net.Conn) {
	h.cfg.Counters.ConnOpened(metrics.ProtocolAMQP)
	defer h.cfg.Counters.ConnClosed(metrics.ProtocolAMQP)
	c := newConn(h, nc)
	defer h.conns.Add(c)()
	c.serve(ctx)
}

// ConnectionCount is the number of open AMQP connections.
func (h *Handler) ConnectionCount() int {
	return h.conns.Len()
}
