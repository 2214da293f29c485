package mqtt

import (
	"net/http"

	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// ServeWebSocket serves MQTT over WebSocket (subprotocol "mqtt", binary
// messages, [MQTT-6.0.0-1]): the connection reads the messages' bytes as
// a stream, with no buffer of the WebSocket layer while it waits. The
// request's context scopes the connection.
func (h *Handler) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	ws, err := wsconn.Accept(w, r, &wsconn.Options{
		Subprotocols: []string{"mqtt"},
		// The HTTP shell applies --websocket-origins and removes the
		// Origin it accepted; a cross-origin request that reaches here
		// otherwise is refused.
		// Our own packet size bound applies, a little above it so that
		// the MQTT reader reports an oversized packet itself.
		ReadLimit: int64(h.cfg.MaxPacketSize) + 8,
		Pool:      &h.wsPool,
	})
	if err != nil {
		h.log.Debug("mqtt websocket accept failed", "err", err)
		return
	}
	if ws.Subprotocol() != "mqtt" {
		_ = ws.Close(wsconn.StatusPolicyViolation, "subprotocol mqtt required")
		return
	}
	h.serveConn(r.Context(), ws.NetConn(wsconn.OpBinary, true), metrics.ProtocolMQTTWS, func() {}) // never parked: not a plain socket
}
