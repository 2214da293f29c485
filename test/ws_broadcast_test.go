package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestWSBroadcastInOrder: a broadcast reaches every subscribed socket in
// order, whether its deliveries are sparse (the server's flushers write
// them) or a burst (each socket's writer batches them), with the
// socket's own frames (pong) in between.
func TestWSBroadcastInOrder(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	const sockets, sparse, burst = 20, 5, 200
	wss := make([]*websocket.Conn, sockets)
	for i := range wss {
		ws := s.dialWS(ctx, t)
		ws.SetReadLimit(1 << 20)
		must(t, wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "b", "exchange": "amq.topic", "key": "news"}))
		var m map[string]any
		if must(t, wsjson.Read(ctx, ws, &m)); m["op"] != "subscribed" {
			t.Fatalf("subscribe: %v", m)
		}
		wss[i] = ws
	}
	ch := mustChannel(t, s.dial(t))
	n := 0
	for range sparse {
		mustPublish(t, ch, "amq.topic", "news", amqp.Publishing{Body: fmt.Appendf(nil, "%d", n)})
		n++
		time.Sleep(5 * time.Millisecond) // sparse: the flushers' case, not a wait for a condition
	}
	must(t, wsjson.Write(ctx, wss[0], map[string]any{"op": "ping", "id": "p"}))
	for range burst {
		mustPublish(t, ch, "amq.topic", "news", amqp.Publishing{Body: fmt.Appendf(nil, "%d", n)})
		n++
	}
	for i, ws := range wss {
		want := 0
		for want < n {
			var m map[string]any
			must(t, wsjson.Read(ctx, ws, &m))
			switch m["op"] {
			case "pong":
				continue
			case "message":
				if got := fmt.Sprint(m["body"]); got != fmt.Sprint(want) {
					t.Fatalf("socket %d: message %q, want %d", i, got, want)
				}
				want++
			default:
				t.Fatalf("socket %d: %v", i, m)
			}
		}
	}
}
