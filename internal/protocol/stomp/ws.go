package stomp

import (
	"net/http"

	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// Subprotocols are the WebSocket subprotocols STOMP clients offer.
var subprotocols = []string{"v12.stomp", "v11.stomp", "v10.stomp"}

// ServeWebSocket upgrades r to a WebSocket carrying STOMP, one frame per
// text message (subprotocols v12.stomp, v11.stomp, v10.stomp; binary
// messages are read too, as some clients send frames with binary bodies
// that way). The connection ends when r's context is cancelled (set the
// http.Server's BaseContext to the server's context so that shutdown
// reaches it), with the same "server shutting down" ERROR as over TCP.
func (h *Handler) ServeWebSocket(w http.ResponseWriter, r *http.Request) {
	ws, err := wsconn.Accept(w, r, &wsconn.Options{
		Subprotocols: subprotocols,
		// A little above the frame bound, so that our reader reports an
		// over-long frame with a STOMP ERROR before the WebSocket layer
		// does.
		ReadLimit: int64(h.cfg.Limits.MaxFrameSize) + 4096,
		Pool:      &h.wsPool,
	})
	if err != nil {
		h.log.Debug("stomp websocket upgrade failed", "err", err)
		return
	}
	// A client that names no subprotocol is served all the same, as
	// RabbitMQ's Web STOMP does; CONNECT's accept-version decides.
	h.serve(r.Context(), ws.NetConn(wsconn.OpText, false), true)
}
