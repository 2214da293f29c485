package httpapi

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// The metrics labels of /ws and SSE (Config.Counters; nil counts nothing).
const (
	protocolWS       = metrics.ProtocolWS
	protocolSSELabel = metrics.ProtocolSSE
)

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
	if err == nil || closing || wsconn.CloseStatus(err) != -1 {
		return false
	}
	var ne net.Error
	return !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) &&
		!errors.Is(err, context.Canceled) && !errors.As(err, &ne)
}
