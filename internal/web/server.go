package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/metrics"
)

// Config tunes the HTTP listener. Zero values take the defaults.
type Config struct {
	// CORSOrigins lists the origins ("https://app.example.com") whose
	// browsers may call the API and open /ws; "*" allows any origin.
	// Same-origin requests are always allowed.
	CORSOrigins []string
	// MQTTWebSocket and STOMPWebSocket, when set, are mounted at /mqtt and
	// /stomp. They authenticate in-band (CONNECT), so this package's basic
	// auth is not applied to them.
	MQTTWebSocket  http.Handler
	STOMPWebSocket http.Handler
	// Metrics, when set, serves Prometheus metrics (metrics.Handler()) at
	// GET /metrics without authentication, as RabbitMQ's Prometheus
	// endpoint does.
	Metrics http.Handler
	// MaxBodySize bounds a request body and a WebSocket frame.
	MaxBodySize int64
	// MaxMessageSize (--max-message-size), when set, also bounds the
	// body of an RPC gateway call, which becomes a message.
	MaxMessageSize int64
	// Outbox bounds the deliveries buffered per WebSocket or SSE stream
	// before the queue is told "full" and keeps them.
	Outbox int
	// SlowSubscriberDepth closes a WebSocket whose private (exchange+key)
	// subscription queue holds more ready messages than this.
	SlowSubscriberDepth int
	// SSEHeartbeat is the interval of the comment lines that keep SSE
	// streams alive through proxies.
	SSEHeartbeat time.Duration
	// MaxFetchTimeout caps the timeout of GET /v1/fetch.
	MaxFetchTimeout time.Duration
	// WriteTimeout bounds one write to a WebSocket.
	WriteTimeout time.Duration
	// Version is reported by /api/overview.
	Version string
	// JWT enables Authorization: Bearer tokens (see jwt.go and doc.go).
	JWT JWTConfig
	// Node, when set, reports the resource figures of GET /api/nodes
	// (the server's resource monitor knows the limits); nil reports what
	// this package can see alone (memory in use, goroutines, alarms).
	Node func() NodeInfo
	// MaxPublishRate (--max-publish-rate) limits publishes to this many
	// messages a second, with a burst of one second's worth: per /ws
	// socket (its reader waits, as AMQP's does), and per user for the
	// HTTP publish endpoints, which answer 429 Too Many Requests with
	// Retry-After beyond it. 0 = no limit.
	MaxPublishRate int
	// StatsInterval is how often the message rates of the management API
	// (message_stats.*_details.rate) are sampled, RabbitMQ's
	// collect_statistics_interval.
	StatsInterval time.Duration
	// Counters, when set, count /ws sockets and SSE streams, refused
	// logins and WebSocket protocol violations (see counters.go).
	Counters *metrics.Counters
	// WSHeartbeat: a /ws peer that does not answer pings for this long is
	// closed (and leaves its presence sets). Default DefaultWSHeartbeat.
	WSHeartbeat time.Duration
	// MaxFrameRate bounds the frames a second one /ws socket may send,
	// publishes and acks aside; beyond it the socket is not read until a
	// token is due (push-back). 0: DefaultMaxFrameRate; negative: none.
	MaxFrameRate int
	// MaxPresence bounds the clients of one channel's presence set
	// (--max-presence); a subscribe beyond it is refused. 0: default.
	MaxPresence int
	// WebSocketOrigins, when set, restricts the origins of browser pages
	// that may open /mqtt and /stomp (same-origin pages always may). Empty:
	// any origin, as RabbitMQ's Web MQTT and Web STOMP plugins (their
	// clients log in with CONNECT, so a foreign page gains nothing).
	WebSocketOrigins []string
}

// NodeInfo is what GET /api/nodes reports of the node's resources. The
// server fills it from its resource monitor (Config.Node); zero values
// are reported as such (a limit of 0 means the alarm is off).
type NodeInfo struct {
	MemUsed       uint64 // bytes, the process's resident set
	MemLimit      uint64 // the memory alarm's threshold
	DiskFree      uint64 // bytes free where the data directory lives
	DiskFreeLimit uint64 // the disk alarm's threshold
	// Started is when the node started; zero: when the web server did.
	Started time.Time
}

// Defaults.
const (
	DefaultMaxBodySize         = 64 << 20
	DefaultOutbox              = 256
	DefaultSlowSubscriberDepth = 10000
	DefaultSSEHeartbeat        = 15 * time.Second
	DefaultMaxFetchTimeout     = 5 * time.Minute
	DefaultWriteTimeout        = 30 * time.Second
	DefaultStatsInterval       = 5 * time.Second
	// DefaultWSHeartbeat: a /ws peer that has not answered a ping within
	// this interval is closed (and leaves its presence sets).
	DefaultWSHeartbeat = 25 * time.Second
	// DefaultMaxFrameRate bounds the frames a /ws socket may send a
	// second, publishes and acks aside (they have their own push-back).
	DefaultMaxFrameRate = 1000
	// DefaultMaxPresence bounds the clients in one channel's presence set.
	DefaultMaxPresence = 10000
)

// SetDefaults fills in the zero fields.
func (c *Config) SetDefaults() {
	if c.MaxBodySize <= 0 {
		c.MaxBodySize = DefaultMaxBodySize
	}
	if c.Outbox <= 0 {
		c.Outbox = DefaultOutbox
	}
	if c.SlowSubscriberDepth <= 0 {
		c.SlowSubscriberDepth = DefaultSlowSubscriberDepth
	}
	if c.SSEHeartbeat <= 0 {
		c.SSEHeartbeat = DefaultSSEHeartbeat
	}
	if c.MaxFetchTimeout <= 0 {
		c.MaxFetchTimeout = DefaultMaxFetchTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.StatsInterval <= 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.WSHeartbeat <= 0 {
		c.WSHeartbeat = DefaultWSHeartbeat
	}
}

// Server is Herald's HTTP shell: it routes, applies CORS, logs users in
// (basic credentials or a bearer token) and checks their permissions. The
// management API (internal/admin) and the messaging endpoints
// (internal/protocol/httpapi) mount their routes on it.
type Server struct {
	cfg    Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger
	mux    *router
	jwt    *jwtVerifier // nil: bearer tokens are refused

	// ctx ends every long-lived handler (WebSocket, SSE, fetch) and the
	// background work of the mounted parts on Close.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // goroutines started with Go

	mu      sync.Mutex // guards closed and the Add side of streams
	closed  bool
	streams sync.WaitGroup
}

// New returns the shell with its own routes (MQTT and STOMP over
// WebSocket, /metrics); mount the other parts, then serve Handler.
func New(cfg Config, b *broker.Broker, users *auth.Users, log *slog.Logger) *Server {
	cfg.SetDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, broker: b, users: users, log: log, mux: &router{}, ctx: ctx, cancel: cancel}
	if v := users.TokenVerifier(); v != nil {
		s.jwt = v // the same keys as the other protocols'
	} else if cfg.JWT.Enabled() {
		var err error
		if s.jwt, err = newJWTVerifier(cfg.JWT); err != nil {
			log.Error("bearer tokens will be refused", "err", err)
		}
	}
	s.routes()
	return s
}

// Handler is the http.Handler that serves everything web.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Config is the configuration the shell was built with, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Broker is the core the handlers serve.
func (s *Server) Broker() *broker.Broker { return s.broker }

// Users is the user database logins are checked against.
func (s *Server) Users() *auth.Users { return s.users }

// Logger is the shell's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Context ends when Close starts.
func (s *Server) Context() context.Context { return s.ctx }

// Go runs f in a goroutine that Close waits for; f must return once
// Context ends.
func (s *Server) Go(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// Close ends every WebSocket (close code 1001 "server shutting down"), SSE
// stream and pending fetch, and the mounted parts' background work, and
// waits for them to return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.streams.Wait()
	s.bg.Wait()
}

// Track registers a long-lived handler so that Close can wait for it; it
// reports false once the server is closing. A handler it accepted calls
// Untrack when it returns.
func (s *Server) Track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams.Add(1)
	return true
}

// Untrack ends what Track began.
func (s *Server) Untrack() { s.streams.Done() }

type userKey struct{}

// UserOf returns the authenticated user of a request.
func UserOf(r *http.Request) *auth.User {
	u, _ := r.Context().Value(userKey{}).(*auth.User)
	return u
}

func (s *Server) routes() {
	m := s.mux
	if s.cfg.MQTTWebSocket != nil {
		m.handle("/mqtt", s.anyOrigin(s.cfg.MQTTWebSocket))
	}
	if s.cfg.STOMPWebSocket != nil {
		m.handle("/stomp", s.anyOrigin(s.cfg.STOMPWebSocket))
	}
	if s.cfg.Metrics != nil {
		m.handle("GET /metrics", s.cfg.Metrics)
	}
}

// Public registers a handler that needs no login ("METHOD /path/{name}").
func (s *Server) Public(pattern string, h http.Handler) { s.mux.handle(pattern, h) }

// Authenticated registers a handler for logged-in users.
func (s *Server) Authenticated(pattern string, h http.HandlerFunc) {
	s.mux.handle(pattern, s.authenticated(h))
}

// Management registers a handler for users with a management tag: any of
// them may read the management API (RabbitMQ's levels).
func (s *Server) Management(pattern string, h http.HandlerFunc) {
	s.Authenticated(pattern, RequireTag(h, managementTags...))
}

// Administrator registers a handler for administrators: users,
// permissions, vhosts, definitions, limits.
func (s *Server) Administrator(pattern string, h http.HandlerFunc) {
	s.Authenticated(pattern, RequireTag(h, auth.TagAdministrator))
}

// Policymaker registers a handler for policymakers and administrators
// (policies, as RabbitMQ).
func (s *Server) Policymaker(pattern string, h http.HandlerFunc) {
	s.Authenticated(pattern, RequireTag(h, auth.TagPolicymaker, auth.TagAdministrator))
}

// serveHTTP applies CORS before routing, so that preflights (which carry
// no credentials) are answered without authentication.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && s.originAllowed(origin) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Herald-*")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) originAllowed(origin string) bool {
	return slices.Contains(s.cfg.CORSOrigins, "*") || slices.ContainsFunc(s.cfg.CORSOrigins, func(o string) bool {
		return strings.EqualFold(strings.TrimSuffix(o, "/"), origin)
	})
}

// authenticated checks a bearer token (JWT, see jwt.go) or else HTTP basic
// credentials against Herald's users.
func (s *Server) authenticated(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token, ok := bearerToken(r); ok {
			s.bearerLogin(w, r, token, h)
			return
		}
		name, pass, ok := r.BasicAuth()
		if !ok {
			unauthorized(w)
			return
		}
		u, err := s.users.Authenticate(name, pass, remoteAddr(r.RemoteAddr))
		if err != nil {
			s.loginFailed(r)
			s.log.Info("http login refused", "remote", r.RemoteAddr, "err", err)
			unauthorized(w)
			return
		}
		h(w, withUser(r, u))
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="Herald"`)
	WriteError(w, http.StatusUnauthorized, "not_authorized", "Login failed")
}

// stringAddr is a net.Addr for a remote address net/http gives as text.
type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }

func remoteAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(s)
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers in the shape of RabbitMQ's management API.
func WriteError(w http.ResponseWriter, status int, errText, reason string) {
	WriteJSON(w, status, map[string]string{"error": errText, "reason": reason})
}

// HTTPStatus maps a broker error code (AMQP-numbered) to an HTTP status.
func HTTPStatus(err error) int {
	var be *broker.Error
	if !errors.As(err, &be) {
		return http.StatusInternalServerError
	}
	switch be.Code {
	case broker.CodeNotFound:
		return http.StatusNotFound
	case broker.CodeAccessRefused:
		return http.StatusForbidden
	case broker.CodeResourceLocked:
		return http.StatusConflict
	case broker.CodeResourceError:
		return http.StatusServiceUnavailable
	case broker.CodeNotImplemented:
		return http.StatusNotImplemented
	case broker.CodeInternal:
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// WriteBrokerError answers a failed broker call.
func WriteBrokerError(w http.ResponseWriter, err error) {
	status := HTTPStatus(err)
	errText := "bad_request"
	switch status {
	case http.StatusNotFound:
		errText = "Object Not Found"
	case http.StatusForbidden:
		errText = "access_refused"
	case http.StatusConflict:
		errText = "resource_locked"
	case http.StatusInternalServerError:
		errText = "internal_error"
	}
	WriteError(w, status, errText, err.Error())
}

// VHostOf resolves the {vhost} path segment (URL-decoded: "%2F" is "/").
func (s *Server) VHostOf(w http.ResponseWriter, name string) *broker.VHost {
	v := s.broker.VHost(name)
	if v == nil {
		WriteError(w, http.StatusNotFound, "Object Not Found", "Not Found")
	}
	return v
}

// ExchangeName maps the management API's name of the default exchange.
func ExchangeName(name string) string {
	if name == "amq.default" {
		return ""
	}
	return name
}

// DecodeBody reads a bounded JSON request body; an empty body leaves v as is.
func (s *Server) DecodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize)
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			WriteError(w, http.StatusRequestEntityTooLarge, "bad_request", "request body too large")
			return false
		}
		WriteError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}
