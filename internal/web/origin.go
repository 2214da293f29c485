package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The origin rules of the endpoints a browser page opens.
//
// /ws and /sse may be reached with the user's stored credentials, so they
// accept same-origin pages and the origins --cors-origins names. /mqtt and
// /stomp log in in-band (CONNECT), so by default they accept any origin,
// as RabbitMQ's Web MQTT and Web STOMP plugins do; --websocket-origins
// may restrict them.

// SameOrigin reports whether a request's Origin is its own host.
func SameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// SameOrAllowedOrigin refuses a browser request (for /sse) from a page of
// an origin --cors-origins does not name: the browser would send the
// user's stored credentials along and, though it hides the answer, the
// server would still subscribe for it.
func (s *Server) SameOrAllowedOrigin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" && !SameOrigin(r, o) && !s.originAllowed(o) {
			WriteError(w, http.StatusForbidden, "origin_refused", "origin "+o+" is not allowed (--cors-origins)")
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
		if o != "" && !SameOrigin(r, o) {
			if len(allowed) > 0 && !slices.Contains(allowed, "*") && !slices.ContainsFunc(allowed, func(a string) bool {
				return strings.EqualFold(strings.TrimSuffix(a, "/"), o)
			}) {
				WriteError(w, http.StatusForbidden, "origin_refused", "origin "+o+" is not allowed (--websocket-origins)")
				return
			}
			r = r.Clone(r.Context())
			r.Header.Del("Origin")
		}
		h.ServeHTTP(w, r)
	})
}
