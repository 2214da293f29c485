package web

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/coder/websocket"

	"github.com/heraldmq/herald/internal/broker"
)

// In-band login and the origin rules of the WebSocket endpoints.
//
// A page that cannot put a token on the upgrade (no headers on a browser
// WebSocket, and a token in the URL ends up in proxies' logs) opens /ws
// without credentials and sends {"op":"connect","token":"<JWT>"} as its
// first frame; the socket is then the token's user, exactly as with
// Authorization: Bearer. This needs bearer tokens to be enabled; without
// them a socket without credentials is refused with 401 as before.

// hasCredentials reports whether a request carries any login.
func hasCredentials(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Has("access_token")
}

// wsEntry routes an upgrade without credentials to the in-band login,
// others to authed (basic or bearer on the upgrade).
func (s *Server) wsEntry(authed http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.jwt == nil || hasCredentials(r) {
			authed.ServeHTTP(w, r)
			return
		}
		s.serveWSConnect(w, r)
	}
}

// serveWSConnect accepts a socket, waits for its connect frame and runs
// it as the token's user. A refusal closes the socket with 1008 and the
// reason (a browser cannot read the status of a refused upgrade).
func (s *Server) serveWSConnect(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server shutting down")
		return
	}
	defer s.streams.Done()
	c, err := websocket.Accept(w, r, s.wsAcceptOptions())
	if err != nil {
		s.log.Info("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	c.SetReadLimit(s.cfg.MaxBodySize)
	refuse := func(reason string) {
		s.log.Info("websocket login refused", "remote", r.RemoteAddr, "reason", reason)
		_ = c.Close(websocket.StatusPolicyViolation, truncateReason(reason))
	}
	ctx, cancel := context.WithTimeout(s.ctx, wsConnectTimeout)
	_, b, err := c.Read(ctx)
	cancel()
	if err != nil {
		refuse("no connect frame")
		return
	}
	f, err := parseFrame(b)
	if err != nil {
		refuse(err.Error())
		return
	}
	if f.Op != "connect" || f.Token == "" {
		refuse(`the first frame must be {"op":"connect","token":"<JWT>"} (or log in on the upgrade)`)
		return
	}
	u, g, err := s.jwt.verify(f.Token)
	if err != nil {
		refuse(err.Error())
		return
	}
	s.jwt.grants.Store(u, g)
	defer s.jwt.grants.Delete(u)
	vname := r.URL.Query().Get("vhost")
	if vname == "" {
		vname = broker.DefaultVHost
	}
	v := s.broker.VHost(vname)
	if v == nil {
		refuse("no vhost '" + vname + "'")
		return
	}
	if err := s.checkerFor(u).CheckVHost(u.Name, v.Name()); err != nil {
		refuse(err.Error())
		return
	}
	id := f.ID
	s.runWS(c, r, u, v, &id)
}

// wsAcceptOptions are /ws's origin rules: same-origin pages and the
// origins Config.CORSOrigins names ("*": any).
func (s *Server) wsAcceptOptions() *websocket.AcceptOptions {
	opts := &websocket.AcceptOptions{OriginPatterns: s.cfg.CORSOrigins}
	if slices.Contains(s.cfg.CORSOrigins, "*") {
		opts.InsecureSkipVerify = true
	}
	return opts
}

// sameOrigin reports whether a request's Origin is its own host.
func sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// sameOrAllowedOrigin refuses a browser request for /sse from a page of
// an origin --cors-origins does not name: the browser would send the
// user's stored credentials along and, though it hides the answer, the
// server would still subscribe for it.
func (s *Server) sameOrAllowedOrigin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !sameOrigin(r, o) && !s.originAllowed(o) {
			writeError(w, http.StatusForbidden, "origin_refused", "origin "+o+" is not allowed (--cors-origins)")
			return
		}
		h(w, r)
	}
}

// anyOrigin applies Config.WebSocketOrigins to /mqtt and /stomp: with none
// set any page may connect (their clients log in in-band with CONNECT, as
// RabbitMQ's Web MQTT and Web STOMP plugins allow); else only those
// origins and same-origin pages. The adapter's WebSocket library checks
// Origin against the Host itself, so once the origin is accepted here the
// header is removed before the request reaches it.
func (s *Server) anyOrigin(h http.Handler) http.Handler {
	allowed := s.cfg.WebSocketOrigins
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o := r.Header.Get("Origin")
		if o != "" && !sameOrigin(r, o) {
			if len(allowed) > 0 && !slices.Contains(allowed, "*") && !slices.ContainsFunc(allowed, func(a string) bool {
				return strings.EqualFold(strings.TrimSuffix(a, "/"), o)
			}) {
				writeError(w, http.StatusForbidden, "origin_refused", "origin "+o+" is not allowed (--websocket-origins)")
				return
			}
			r = r.Clone(r.Context())
			r.Header.Del("Origin")
		}
		h.ServeHTTP(w, r)
	})
}
