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
	// Console, when set, serves the web console (console.Handler()) at /
	// and /console/...: static files, without authentication (the
	// console's own requests to /api carry the user's credentials).
	Console http.Handler
	// Metrics, when set, serves Prometheus metrics (metrics.Handler()) at
	// GET /metrics without authentication, as RabbitMQ's Prometheus
	// endpoint does.
	Metrics http.Handler
	// MaxBodySize bounds a request body and a WebSocket frame.
	MaxBodySize int64
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

// Defaults.
const (
	DefaultMaxBodySize         = 64 << 20
	DefaultOutbox              = 256
	DefaultSlowSubscriberDepth = 10000
	DefaultSSEHeartbeat        = 15 * time.Second
	DefaultMaxFetchTimeout     = 5 * time.Minute
	DefaultWriteTimeout        = 30 * time.Second
	DefaultStatsInterval       = 5 * time.Second
)

func (c *Config) setDefaults() {
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

// Server is Herald's HTTP front: REST publish and pull, WebSocket and SSE
// push, and the basics of RabbitMQ's management API.
type Server struct {
	cfg    Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger
	mux    *router
	jwt    *jwtVerifier // nil: bearer tokens are refused
	// started is when New ran: the node's uptime, unless Config.Node
	// says otherwise.
	started time.Time
	node    string // "herald@<hostname>", RabbitMQ's node name shape

	// stats samples the queues' counters for the message rates
	// (stats.go); its goroutine runs from New to Close.
	stats *statsSampler
	// pubLimits are the HTTP publish endpoints' per-user rate limits.
	pubLimits *publishLimits
	// httpCount and sseCount count the messages of plain HTTP requests
	// and SSE streams, which have no registered connection, for the
	// per-protocol metrics (protocol labels "http" and "sse").
	httpCount, sseCount *broker.Connection
	// presence holds the channels' presence sets (presence.go).
	presence *presenceHub
	// wbufs pools the /ws writers' batch buffers (*[]byte).
	wbufs sync.Pool

	// ctx ends every long-lived handler (WebSocket, SSE, fetch) and the
	// stats sampler on Close.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup // the stats sampler

	mu      sync.Mutex // guards closed and the Add side of streams
	closed  bool
	streams sync.WaitGroup
}

// Protocol names under which this package counts messages that belong to
// no connection (broker.ProtocolCounter; metrics label them "http" and
// "sse"). /ws sockets are registered connections of protocol "Web".
const (
	protocolHTTP = "HTTP"
	protocolSSE  = "SSE"
)

// New returns the web server; mount Handler on the HTTP listener.
func New(cfg Config, b *broker.Broker, users *auth.Users, log *slog.Logger) *Server {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, started: time.Now(), node: nodeName(), broker: b, users: users, log: log, mux: &router{}, ctx: ctx, cancel: cancel,
		stats: newStatsSampler(b), pubLimits: newPublishLimits(cfg.MaxPublishRate),
		httpCount: b.ProtocolCounter(protocolHTTP), sseCount: b.ProtocolCounter(protocolSSE),
		presence: newPresenceHub(cfg.MaxPresence)}
	if cfg.JWT.Enabled() {
		var err error
		if s.jwt, err = newJWTVerifier(cfg.JWT); err != nil {
			log.Error("bearer tokens will be refused", "err", err)
		}
	}
	s.routes()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.stats.run(ctx, cfg.StatsInterval)
	}()
	return s
}

// Handler is the http.Handler that serves everything web.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Close ends every WebSocket (close code 1001 "server shutting down"), SSE
// stream and pending fetch, and the stats sampler, and waits for them to
// return.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.streams.Wait()
	s.bg.Wait()
}

// track registers a long-lived handler so that Close can wait for it; it
// reports false once the server is closing.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams.Add(1)
	return true
}

type userKey struct{}

// userOf returns the authenticated user of a request.
func userOf(r *http.Request) *auth.User {
	u, _ := r.Context().Value(userKey{}).(*auth.User)
	return u
}

func (s *Server) routes() {
	m := s.mux
	m.handle("GET /herald.js", http.HandlerFunc(s.heraldJS))
	m.handle("GET /herald.d.ts", http.HandlerFunc(s.heraldDTS))
	if s.cfg.MQTTWebSocket != nil {
		m.handle("/mqtt", s.anyOrigin(s.cfg.MQTTWebSocket))
	}
	if s.cfg.STOMPWebSocket != nil {
		m.handle("/stomp", s.anyOrigin(s.cfg.STOMPWebSocket))
	}
	if s.cfg.Console != nil {
		m.handle("GET /", s.cfg.Console)
		m.handle("GET /console/{path...}", s.cfg.Console)
	}
	if s.cfg.Metrics != nil {
		m.handle("GET /metrics", s.cfg.Metrics)
	}
	a := func(pattern string, h http.HandlerFunc) { m.handle(pattern, s.authenticated(h)) }
	m.handle("GET /ws", s.wsEntry(s.authenticated(s.serveWS)))
	a("GET /sse", s.sameOrAllowedOrigin(s.serveSSE))
	a("GET /api/presence/{vhost}/{channel}", s.getPresence)
	a("GET /api/presence/{vhost}/{channel}/stats", s.getPresence)
	a("POST /api/users/{vhost}/{user}/messages", s.postUserMessage)

	a("POST /api/exchanges/{vhost}/{exchange}/publish", s.publishJSON)
	a("POST /v1/publish/{exchange}/{key...}", s.publishRaw)
	a("POST /api/queues/{vhost}/{queue}/get", s.getMessages)
	a("GET /v1/fetch/{queue}", s.fetch)

	// Management: any management tag reads, administrator manages
	// users, permissions and vhosts (RabbitMQ's levels).
	mg := func(pattern string, h http.HandlerFunc) { a(pattern, requireTag(h, managementTags...)) }
	admin := func(pattern string, h http.HandlerFunc) { a(pattern, requireTag(h, auth.TagAdministrator)) }
	mg("GET /api/overview", s.overview)
	mg("GET /api/whoami", s.whoami)
	mg("GET /api/vhosts", s.listVHosts)
	mg("GET /api/vhosts/{vhost}", s.showVHost)
	admin("PUT /api/vhosts/{vhost}", s.putVHost)
	admin("DELETE /api/vhosts/{vhost}", s.deleteVHost)
	admin("GET /api/users", s.listUsers)
	admin("GET /api/users/{user}", s.showUser)
	admin("PUT /api/users/{user}", s.putUser)
	admin("DELETE /api/users/{user}", s.deleteUser)
	admin("GET /api/users/{user}/permissions", s.userPermissions)
	admin("GET /api/permissions", s.listPermissions)
	admin("GET /api/permissions/{vhost}/{user}", s.showPermissions)
	admin("PUT /api/permissions/{vhost}/{user}", s.putPermissions)
	admin("DELETE /api/permissions/{vhost}/{user}", s.deletePermissions)
	admin("GET /api/vhosts/{vhost}/permissions", s.vhostPermissions)
	mg("GET /api/exchanges", s.listExchanges)
	mg("GET /api/exchanges/{vhost}", s.listExchanges)
	mg("GET /api/exchanges/{vhost}/{name}", s.showExchange)
	mg("PUT /api/exchanges/{vhost}/{name}", s.putExchange)
	mg("DELETE /api/exchanges/{vhost}/{name}", s.deleteExchange)
	mg("GET /api/queues", s.listQueues)
	mg("GET /api/queues/{vhost}", s.listQueues)
	mg("GET /api/queues/{vhost}/{name}", s.showQueue)
	mg("PUT /api/queues/{vhost}/{name}", s.putQueue)
	mg("DELETE /api/queues/{vhost}/{name}", s.deleteQueue)
	mg("DELETE /api/queues/{vhost}/{name}/contents", s.purgeQueue)
	mg("GET /api/bindings", s.listBindings)
	mg("GET /api/bindings/{vhost}", s.listBindings)
	mg("POST /api/bindings/{vhost}/e/{exchange}/q/{queue}", s.bindQueue)
	mg("GET /api/queues/{vhost}/{name}/messages", s.peekMessages)
	mg("DELETE /api/queues/{vhost}/{name}/messages/{id}", s.deleteMessage)
	mg("POST /api/queues/{vhost}/{name}/move", s.moveMessages)
	mg("GET /api/aliveness-test/{vhost}", s.aliveness)
	// Policies need policymaker or administrator, as RabbitMQ.
	pm := func(pattern string, h http.HandlerFunc) {
		a(pattern, requireTag(h, auth.TagPolicymaker, auth.TagAdministrator))
	}
	pm("GET /api/policies", s.listPolicies)
	pm("GET /api/policies/{vhost}", s.listPolicies)
	pm("GET /api/policies/{vhost}/{name}", s.showPolicy)
	pm("PUT /api/policies/{vhost}/{name}", s.putPolicy)
	pm("DELETE /api/policies/{vhost}/{name}", s.deletePolicy)
	admin("GET /api/definitions", s.exportDefinitions)
	admin("GET /api/definitions/{vhost}", s.exportDefinitions)
	admin("POST /api/definitions", s.importDefinitions)
	admin("POST /api/definitions/{vhost}", s.importDefinitions)
	mg("GET /api/connections", s.listConnections)
	mg("GET /api/vhosts/{vhost}/connections", s.listConnections)
	mg("GET /api/connections/{name}", s.showConnection)
	mg("DELETE /api/connections/{name}", s.closeConnection)
	mg("GET /api/consumers", s.listConsumers)
	mg("GET /api/consumers/{vhost}", s.listConsumers)
	mg("GET /api/health/checks/alarms", s.alarms)
	mg("GET /api/nodes", s.listNodes)
	mg("GET /api/nodes/{node}", s.showNode)
	mg("GET /api/channels", s.listChannels)
	mg("GET /api/vhosts/{vhost}/channels", s.listChannels)
	mg("GET /api/connections/{name}/channels", s.connectionChannels)
	mg("GET /api/channels/{channel}", s.showChannel)
	mg("GET /api/presence", s.listPresence)
	mg("GET /api/presence/{vhost}", s.listPresence)
	s.limitRoutes(admin)
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
			s.log.Info("http login refused", "remote", r.RemoteAddr, "err", err)
			unauthorized(w)
			return
		}
		h(w, withUser(r, u))
	})
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="Herald"`)
	writeError(w, http.StatusUnauthorized, "not_authorized", "Login failed")
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

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the shape of RabbitMQ's management API.
func writeError(w http.ResponseWriter, status int, errText, reason string) {
	writeJSON(w, status, map[string]string{"error": errText, "reason": reason})
}

// httpStatus maps a broker error code (AMQP-numbered) to an HTTP status.
func httpStatus(err error) int {
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

// writeBrokerError answers a failed broker call.
func writeBrokerError(w http.ResponseWriter, err error) {
	status := httpStatus(err)
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
	writeError(w, status, errText, err.Error())
}

// vhostOf resolves the {vhost} path segment (URL-decoded: "%2F" is "/").
func (s *Server) vhostOf(w http.ResponseWriter, name string) *broker.VHost {
	v := s.broker.VHost(name)
	if v == nil {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
	}
	return v
}

// exchangeName maps the management API's name of the default exchange.
func exchangeName(name string) string {
	if name == "amq.default" {
		return ""
	}
	return name
}

// decodeBody reads a bounded JSON request body; an empty body leaves v as is.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize)
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "bad_request", "request body too large")
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}
