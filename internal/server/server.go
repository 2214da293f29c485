// Package server owns Herald's listeners: it binds them, runs their accept
// loops, hands connections to the protocol adapters and shuts everything
// down cleanly. It is what cmd/herald and the end-to-end tests start.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/protocol/mqtt"
	"github.com/heraldmq/herald/internal/protocol/stomp"
	"github.com/heraldmq/herald/internal/store"
	"github.com/heraldmq/herald/internal/web"
	"github.com/heraldmq/herald/internal/web/console"
)

// Off disables a listener when given as its address.
const Off = "off"

// Config is everything a Server needs. Zero values take defaults.
type Config struct {
	// AMQPAddr is the AMQP 0-9-1 listen address (":5672"); "" or "off"
	// disables it; port 0 picks a free port (see Server.AMQPAddr).
	AMQPAddr string
	// HTTPAddr is the HTTP listen address (":15672", RabbitMQ's management
	// port): REST, WebSocket, SSE, management API. "" or "off" disables it.
	HTTPAddr string
	Web      web.Config
	// MQTTAddr is the MQTT 3.1.1/5 listen address (":1883"); "" or "off"
	// disables it. MQTT over WebSocket is served at /mqtt on HTTPAddr.
	MQTTAddr string
	MQTT     mqtt.Config
	// STOMPAddr is the STOMP listen address (":61613"); "" or "off"
	// disables it. STOMP over WebSocket is served at /stomp on HTTPAddr.
	STOMPAddr string
	STOMP     stomp.Config
	// DataDir is where durable state lives.
	DataDir string
	AMQP    amqp091.Config
	Logger  *slog.Logger
	// Users defaults to guest/guest, loopback only.
	Users *auth.Users
	// ConsumerTimeout is the default x-consumer-timeout (0 = off).
	ConsumerTimeout time.Duration
	// StoreSegmentSize bounds a message log segment file (0 = the store's
	// default, 64 MiB); tests make it small to span many segments.
	StoreSegmentSize int64
	// StoreCompactInterval is how often the message log rewrites sparse
	// segments (0 = every minute).
	StoreCompactInterval time.Duration
	// MemoryHighWatermark is the share of total RAM above which publishers
	// are blocked (0 = the default 0.4; negative = off).
	MemoryHighWatermark float64
	// DiskFreeLimit is the free space in DataDir below which publishers are
	// blocked (0 = the default 50 MB; negative = off).
	DiskFreeLimit int64
	// AlarmCheckInterval is how often memory and disk are checked (default 1s).
	AlarmCheckInterval time.Duration
}

// Server is a running Herald instance.
type Server struct {
	cfg     Config
	log     *slog.Logger
	broker  *broker.Broker
	amqp    *amqp091.Handler
	mqtt    *mqtt.Handler
	stomp   *stomp.Handler
	mtr     *metrics.Metrics
	web     *web.Server
	http    *http.Server
	defs    *definitionsFile
	monitor *resourceMonitor
	store   *store.Log

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loops and connection handlers

	mu        sync.Mutex
	listeners []net.Listener
	conns     map[net.Conn]struct{}
	amqpAddr  net.Addr
	httpAddr  net.Addr
	mqttAddr  net.Addr
	stompAddr net.Addr
}

// New builds a server; Start binds its listeners.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Users == nil {
		cfg.Users = auth.NewDefaultUsers()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "./data"
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create data directory %q: %w (choose another with --data-dir)", cfg.DataDir, err)
	}
	if cfg.StoreCompactInterval <= 0 {
		cfg.StoreCompactInterval = time.Minute
	}
	log, report, err := store.Open(filepath.Join(cfg.DataDir, "log"), store.Options{Logger: cfg.Logger.With("component", "store"),
		SegmentSize: cfg.StoreSegmentSize, CompactInterval: cfg.StoreCompactInterval})
	if err != nil {
		return nil, fmt.Errorf("cannot open the message log in %q: %w", cfg.DataDir, err)
	}
	if report.CorruptRecords > 0 || report.TruncatedBytes > 0 {
		cfg.Logger.Warn("message log recovered with damage", "corrupt_records", report.CorruptRecords, "truncated_bytes", report.TruncatedBytes)
	}
	defs := &definitionsFile{path: filepath.Join(cfg.DataDir, definitionsFileName), log: cfg.Logger}
	b := broker.New(broker.Options{Logger: cfg.Logger, ConsumerTimeout: cfg.ConsumerTimeout, OnDefinitionsChange: defs.changed, Store: log})
	defs.broker = b
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		broker: b,
		amqp:   amqp091.NewHandler(cfg.AMQP, b, cfg.Users, cfg.Logger.With("protocol", "amqp")),
		conns:  make(map[net.Conn]struct{}),
		defs:   defs,
		store:  log,
	}
	s.mqtt = mqtt.NewHandler(cfg.MQTT, b, cfg.Users, cfg.Logger.With("protocol", "mqtt"))
	s.stomp = stomp.NewHandler(cfg.STOMP, b, cfg.Users, cfg.Logger.With("protocol", "stomp"))
	s.mtr = metrics.New(b)
	if enabled(cfg.HTTPAddr) {
		if cfg.Web.Version == "" {
			cfg.Web.Version = cfg.AMQP.Version
		}
		cfg.Web.MQTTWebSocket = http.HandlerFunc(s.mqtt.ServeWebSocket)
		cfg.Web.STOMPWebSocket = http.HandlerFunc(s.stomp.ServeWebSocket)
		cfg.Web.Console = console.Handler()
		cfg.Web.Metrics = s.mtr.Handler()
		s.web = web.New(cfg.Web, b, cfg.Users, cfg.Logger.With("protocol", "http"))
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.monitor = newResourceMonitor(s, cfg)
	return s, nil
}

// Broker is the server's core, for tests and embedding.
func (s *Server) Broker() *broker.Broker { return s.broker }

// AMQPAddr is the bound AMQP address, or nil when the listener is off.
func (s *Server) AMQPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.amqpAddr
}

// MQTTAddr is the bound MQTT address, or nil when the listener is off.
func (s *Server) MQTTAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mqttAddr
}

// STOMPAddr is the bound STOMP address, or nil when the listener is off.
func (s *Server) STOMPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stompAddr
}

// HTTPAddr is the bound HTTP address, or nil when the listener is off.
func (s *Server) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

func enabled(addr string) bool { return addr != "" && !strings.EqualFold(addr, Off) }

// Start prepares the data directory, restores the durable definitions and
// binds every enabled listener.
func (s *Server) Start() error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("cannot create data directory %q: %w (choose another with --data-dir)", s.cfg.DataDir, err)
	}
	if err := s.defs.load(); err != nil {
		return err
	}
	if _, _, err := s.broker.RecoverMessages(); err != nil {
		return err
	}
	s.wg.Add(1)
	go s.monitor.run()
	if s.web != nil {
		ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("cannot listen for HTTP on %s: %w (is RabbitMQ's management plugin or another Herald running? pick another address with --http, or --http off)", s.cfg.HTTPAddr, err)
		}
		s.mu.Lock()
		s.httpAddr = ln.Addr()
		s.mu.Unlock()
		s.http = &http.Server{Handler: s.web.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
			// WebSocket sessions (MQTT, STOMP) see server shutdown through this.
			BaseContext: func(net.Listener) context.Context { return s.ctx }}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http listener failed", "addr", ln.Addr().String(), "err", err)
			}
		}()
	}
	if enabled(s.cfg.MQTTAddr) {
		ln, err := net.Listen("tcp", s.cfg.MQTTAddr)
		if err != nil {
			return fmt.Errorf("cannot listen for MQTT on %s: %w (is mosquitto or another broker running? pick another address with --mqtt, or --mqtt off)", s.cfg.MQTTAddr, err)
		}
		s.mu.Lock()
		s.mqttAddr = ln.Addr()
		s.mu.Unlock()
		s.serve(ln, s.mqtt.ServeConn)
	}
	if enabled(s.cfg.STOMPAddr) {
		ln, err := net.Listen("tcp", s.cfg.STOMPAddr)
		if err != nil {
			return fmt.Errorf("cannot listen for STOMP on %s: %w (pick another address with --stomp, or --stomp off)", s.cfg.STOMPAddr, err)
		}
		s.mu.Lock()
		s.stompAddr = ln.Addr()
		s.mu.Unlock()
		s.serve(ln, s.stomp.ServeConn)
	}
	if enabled(s.cfg.AMQPAddr) {
		ln, err := net.Listen("tcp", s.cfg.AMQPAddr)
		if err != nil {
			return fmt.Errorf("cannot listen for AMQP on %s: %w (is another broker running? pick another address with --amqp, or --amqp off)", s.cfg.AMQPAddr, err)
		}
		s.mu.Lock()
		s.amqpAddr = ln.Addr()
		s.mu.Unlock()
		s.serve(ln, s.amqp.ServeConn)
	}
	return nil
}

func (s *Server) serve(ln net.Listener, handle func(context.Context, net.Conn)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				s.log.Warn("accept failed", "addr", ln.Addr().String(), "err", err)
				continue
			}
			s.mu.Lock()
			s.conns[nc] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, nc)
					s.mu.Unlock()
				}()
				handle(s.ctx, nc)
			}()
		}
	}()
}

// Shutdown stops accepting, asks every connection to close (AMQP clients
// get connection.close 320 CONNECTION_FORCED) and waits for them until ctx
// ends, after which the remaining sockets are closed hard.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	s.listeners = nil
	s.mu.Unlock()
	s.cancel()
	if s.web != nil {
		s.web.Close() // ends WebSocket and SSE streams so Shutdown below can finish
		_ = s.http.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	defer func() {
		s.mqtt.Close()
		s.broker.Close()
		if err := s.store.Close(); err != nil {
			s.log.Warn("closing the message log", "err", err)
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for nc := range s.conns {
			_ = nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}
