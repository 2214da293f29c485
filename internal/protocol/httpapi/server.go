// Package httpapi is messaging over HTTP, mounted on the HTTP shell
// (internal/web): REST publish and pull (RabbitMQ's
// /api/exchanges/.../publish and /api/queues/.../get, Herald's /v1/publish
// and /v1/fetch), push over WebSocket (/ws, a JSON protocol) and
// Server-Sent Events (/sse), and the browser client /herald.js.
package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"runtime"
	"sync"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
	"github.com/heraldmq/herald/internal/web"
)

// Server serves the messaging endpoints.
type Server struct {
	shell  *web.Server
	cfg    web.Config
	broker *broker.Broker
	users  *auth.Users
	log    *slog.Logger
	// ctx ends every long-lived handler (WebSocket, SSE, fetch) when the
	// shell closes.
	ctx context.Context
	// pubLimits are the HTTP publish endpoints' per-user rate limits.
	pubLimits *publishLimits
	// httpCount and sseCount count the messages of plain HTTP requests
	// and SSE streams, which have no registered connection, for the
	// per-protocol metrics (protocol labels "http" and "sse").
	httpCount, sseCount *broker.Connection
	// rpc is the HTTP gateway to RPC services (rpc.go).
	rpc *rpcGateway
	// presence holds the channels' presence sets (presence.go).
	presence *presenceHub
	// wbufs pools the /ws writers' scratch buffers (*[]byte).
	wbufs sync.Pool
	// wspool lends the /ws sockets their read buffers and write batches.
	wspool wsconn.Pool
	// encCache shares the encoding of a broadcast message between the
	// sockets it goes to (wswriter.go).
	encCache encCache
	// watch pings the /ws peers and closes them on shutdown (wswatch.go).
	watch wsWatch
	// flushes writes sparse /ws deliveries without a writer goroutine
	// per socket (wsflush.go).
	flushes flushQueue
	// poller holds idle plain-HTTP /ws sockets without a goroutine
	// (ws.go); it closes when the shell does (ctx), which resumes the
	// parked sockets for their shutdown.
	poller *kit.IdlePoller
}

// Protocol names under which this package counts messages that belong to
// no connection (broker.ProtocolCounter; metrics label them "http" and
// "sse"). /ws sockets are registered connections of protocol "Web".
const (
	protocolHTTP = "HTTP"
	protocolSSE  = "SSE"
)

// Mount registers the messaging endpoints on the shell.
func Mount(shell *web.Server) *Server {
	cfg, b := shell.Config(), shell.Broker()
	s := &Server{shell: shell, cfg: cfg, broker: b, users: shell.Users(), log: shell.Logger(), ctx: shell.Context(),
		pubLimits: newPublishLimits(cfg.MaxPublishRate),
		httpCount: b.ProtocolCounter(protocolHTTP), sseCount: b.ProtocolCounter(protocolSSE),
		presence: newPresenceHub(cfg.MaxPresence)}
	s.rpc = newRPCGateway(s)
	s.flushes.max = max(runtime.GOMAXPROCS(0), 1)
	s.poller = kit.NewIdlePoller(s.log)
	context.AfterFunc(s.ctx, s.poller.Close)
	s.routes()
	return s
}

func (s *Server) routes() {
	s.shell.Public("GET /herald.js", http.HandlerFunc(s.heraldJS))
	s.shell.Public("GET /herald.d.ts", http.HandlerFunc(s.heraldDTS))
	a := s.shell.Authenticated
	s.shell.AuthenticatedInBand("GET /ws", s.serveWS, s.serveWSConnect)
	a("GET /sse", s.shell.SameOrAllowedOrigin(s.serveSSE))
	a("GET /api/presence/{vhost}/{channel}", s.getPresence)
	a("GET /api/presence/{vhost}/{channel}/stats", s.getPresence)
	a("POST /api/users/{vhost}/{user}/messages", s.postUserMessage)
	// The console's presence page (management users).
	s.shell.Management("GET /api/presence", s.listPresence)
	s.shell.Management("GET /api/presence/{vhost}", s.listPresence)
	a("POST /api/exchanges/{vhost}/{exchange}/publish", s.publishJSON)
	a("POST /v1/publish/{exchange}/{key...}", s.publishRaw)
	a("POST /api/queues/{vhost}/{queue}/get", s.getMessages)
	a("GET /v1/fetch/{queue}", s.fetch)
	a("GET /api/streams/{vhost}/{name}/messages", s.readStream)
	a("POST /api/rpc/{vhost}/{service}/{method}", s.callRPC)
}

// track registers a long-lived handler with the shell so that its Close
// waits for it; false once the shell is closing. untrack ends it.
func (s *Server) track() bool { return s.shell.Track() }
func (s *Server) untrack()    { s.shell.Untrack() }

// The shell's helpers under the names this package's handlers use.

func writeJSON(w http.ResponseWriter, status int, v any) { web.WriteJSON(w, status, v) }
func writeError(w http.ResponseWriter, status int, errText, reason string) {
	web.WriteError(w, status, errText, reason)
}
func writeBrokerError(w http.ResponseWriter, err error) { web.WriteBrokerError(w, err) }
func userOf(r *http.Request) *auth.User                 { return web.UserOf(r) }
func exchangeName(name string) string                   { return web.ExchangeName(name) }

func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	return s.shell.DecodeBody(w, r, v)
}
func (s *Server) usableVHost(w http.ResponseWriter, r *http.Request, name string) *broker.VHost {
	return s.shell.UsableVHost(w, r, name)
}
func (s *Server) check(u *auth.User, v *broker.VHost, kind auth.Kind, res auth.Resource, name string) error {
	return s.shell.Check(u, v, kind, res, name)
}
func (s *Server) checkTopic(u *auth.User, v *broker.VHost, kind auth.Kind, exchange, key string) error {
	return s.shell.CheckTopic(u, v, kind, exchange, key)
}
