package rpc

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/pkg/rpc/internal/amqpc"
)

// Reconnect delays: the first retry comes quickly (a broker restart takes
// well under a second), later ones back off so a broker that is down for
// long is not hammered.
const (
	defaultReconnectMin = 50 * time.Millisecond
	defaultReconnectMax = 5 * time.Second
)

// ConnConfig is how the client and the server reach the broker.
type ConnConfig struct {
	// URL is the broker's AMQP URL, e.g. amqp://guest:guest@localhost:5672/.
	URL string
	// AMQP configures the connection as amqp091-go's DialConfig would
	// (vhost, SASL, TLS, heartbeat, client properties, frame size, dialer;
	// the SDK speaks AMQP with its own lean client, which honours these).
	// Its Recovery must be nil: the SDK reconnects itself.
	AMQP amqp.Config
	// ReconnectMin and ReconnectMax bound the delay between reconnect
	// attempts (exponential with jitter); defaults 50ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// Logger gets reconnects, dropped requests and handler panics;
	// slog.Default() when nil.
	Logger *slog.Logger
}

func (c *ConnConfig) defaults() {
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = defaultReconnectMin
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(defaultReconnectMax, c.ReconnectMin)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// session keeps one AMQP connection alive: it dials, hands each new
// connection to setup (which declares and consumes what its owner needs),
// and when the connection drops it dials again until stopped. It is the
// owner of the connection; setup's goroutines end when it closes.
type session struct {
	cfg   ConnConfig
	setup func(*amqpc.Conn) error

	stop     chan struct{} // closed by close: no more reconnecting
	done     chan struct{} // closed when run returns
	stopOnce sync.Once

	mu   sync.Mutex
	conn *amqpc.Conn // nil while disconnected
}

// startSession dials once (so a wrong URL or password fails at once) and
// then keeps the connection in the background.
func startSession(cfg ConnConfig, setup func(*amqpc.Conn) error) (*session, error) {
	cfg.defaults()
	if cfg.AMQP.Recovery != nil {
		// Two reconnect loops would fight over the same connection.
		return nil, errors.New("rpc: ConnConfig.AMQP.Recovery must be nil: the SDK reconnects itself")
	}
	s := &session{cfg: cfg, setup: setup, stop: make(chan struct{}), done: make(chan struct{})}
	conn, err := s.connect()
	if err != nil {
		return nil, err
	}
	go s.run(conn)
	return s, nil
}

func (s *session) connect() (*amqpc.Conn, error) {
	conn, err := amqpc.Dial(s.cfg.URL, s.cfg.AMQP)
	if err != nil {
		return nil, err
	}
	if err := s.setup(conn); err != nil {
		_ = conn.Close()
		return nil, err
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	return conn, nil
}

func (s *session) run(conn *amqpc.Conn) {
	defer close(s.done)
	for {
		closed := conn.NotifyClose(make(chan *amqp.Error, 1))
		select {
		case <-s.stop:
			_ = conn.Close()
			return
		case err := <-closed:
			s.mu.Lock()
			s.conn = nil
			s.mu.Unlock()
			s.cfg.Logger.Warn("rpc: connection to the broker lost; reconnecting", "err", err)
		}
		var ok bool
		if conn, ok = s.redial(); !ok {
			return
		}
		s.cfg.Logger.Info("rpc: reconnected to the broker")
	}
}

// redial dials with exponential backoff and full jitter until it
// succeeds or the session is stopped.
func (s *session) redial() (*amqpc.Conn, bool) {
	delay := s.cfg.ReconnectMin
	t := time.NewTimer(jitter(delay))
	defer t.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-s.stop:
			return nil, false
		case <-t.C:
		}
		conn, err := s.connect()
		if err == nil {
			return conn, true
		}
		s.cfg.Logger.Debug("rpc: reconnect failed", "attempt", attempt, "err", err)
		delay = min(delay*2, s.cfg.ReconnectMax)
		t.Reset(jitter(delay))
	}
}

// close stops reconnecting, closes the connection and waits for run to end.
func (s *session) close(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitter is "equal jitter": a uniform delay in [d/2, d], so clients that
// lost the broker together do not come back in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

var errNotConnected = errors.New("not connected to the broker")
