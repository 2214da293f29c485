package web

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"github.com/heraldmq/herald/internal/metrics"
)

// The web side of the adapters' connection counters (metrics.Counters,
// Config.Counters; nil counts nothing): /ws sockets and SSE streams
// opened and closed, refused logins on every authenticated endpoint, and
// /ws sockets the WebSocket library closed for a protocol violation.

// The metrics labels of /ws and SSE.
const (
	protocolWS       = metrics.ProtocolWS
	protocolSSELabel = metrics.ProtocolSSE
)

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

// streamOpened counts an accepted /ws socket or SSE stream; the returned
// func counts its end.
func (s *Server) streamOpened(protocol string) (closed func()) {
	s.cfg.Counters.ConnOpened(protocol)
	return func() { s.cfg.Counters.ConnClosed(protocol) }
}

// wsViolation reports whether a /ws read loop ended because the client
// broke the WebSocket protocol (an oversized message, a bad frame or
// opcode, an unmasked frame: the library then closes with 1009 or 1002),
// rather than by a close handshake, a lost connection or Herald's own
// close (closing).
func wsViolation(err error, closing bool) bool {
	if err == nil || closing || websocket.CloseStatus(err) != -1 {
		return false
	}
	var ne net.Error
	return !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) &&
		!errors.Is(err, context.Canceled) && !errors.As(err, &ne)
}
