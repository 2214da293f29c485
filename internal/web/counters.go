package web

import (
	"net/http"
	"strings"

	"github.com/heraldmq/herald/internal/metrics"
)

// The web side of the adapters' connection counters (metrics.Counters,
// Config.Counters; nil counts nothing): /ws sockets and SSE streams
// opened and closed, refused logins on every authenticated endpoint, and
// /ws sockets the WebSocket library closed for a protocol violation.

// protocolLabel is the metrics protocol of a request's endpoint.
func protocolLabel(r *http.Request) string {
	switch {
	case r.URL.Path == "/ws" || strings.HasPrefix(r.URL.Path, "/ws/"):
		return metrics.ProtocolWS
	case r.URL.Path == "/sse" || strings.HasPrefix(r.URL.Path, "/sse/"):
		return metrics.ProtocolSSE
	}
	return metrics.ProtocolHTTP
}

// loginFailed counts a refused login (basic credentials or a bearer
// token; a request without any is a challenge, not a failure).
func (s *Server) loginFailed(r *http.Request) {
	s.cfg.Counters.AuthFailed(protocolLabel(r))
}
