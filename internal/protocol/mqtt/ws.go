package mqtt

import (
	"net/http"

	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// ServeWebSocket serves MQTT over WebSocket (subprotocol "mqtt", binary
// messages, [MQTT-6.0.0-1]): the connection reads the messages' bytes as
// a stream, with no buffer of the WebSocket layer while it waits. Over
// plain TCP an idle connection parks as a plain MQTT one does (its TCP
// socket in the idle poller, no goroutine) and the handler returns; the
// Handler's Close ends the connections (v5 DISCONNECT 0x8B).
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
	// The connection may park (WebSocket over plain TCP) and so outlive
	// this request, whose context ends when the handler returns: it runs
	// under the Handler's life instead, which Close ends and waits for.
	h.mu.Lock()
	if h.life.Err() != nil {
		h.mu.Unlock()
		_ = ws.Close(wsconn.StatusGoingAway, "server shutting down")
		return
	}
	h.wsConns.Add(1)
	h.mu.Unlock()
	h.serveConn(h.life, ws.NetConn(wsconn.OpBinary, true), h.wsConns.Done)
}
