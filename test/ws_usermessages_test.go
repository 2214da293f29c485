package test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestWSUserMessagesReachIdleSockets: a /ws socket's user queue is made
// by the first message to its user (not at connect), and that first
// message, from AMQP, from another socket's send op or from the HTTP API,
// reaches every socket of the user, idle ones included.
func TestWSUserMessagesReachIdleSockets(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	dial := func() *websocket.Conn { return s.dialWS(ctx, t) }
	// next reads frames until a per-user message, and returns its body.
	next := func(ws *websocket.Conn) string {
		t.Helper()
		for {
			var m map[string]any
			must(t, wsjson.Read(ctx, ws, &m))
			if m["op"] == "message" && m["sub"] == "$user" {
				return fmt.Sprint(m["body"])
			}
			if m["op"] == "error" {
				t.Fatalf("error frame: %v", m)
			}
		}
	}
	a, b := dial(), dial()
	// Both sockets are up (and idle) once each has answered a ping.
	for _, ws := range []*websocket.Conn{a, b} {
		must(t, wsjson.Write(ctx, ws, map[string]any{"op": "ping", "id": "p"}))
		var m map[string]any
		if must(t, wsjson.Read(ctx, ws, &m)); m["op"] != "pong" {
			t.Fatalf("ping: %v", m)
		}
	}

	ch := mustChannel(t, s.dial(t))
	mustPublish(t, ch, "amq.herald.user", "guest", amqp.Publishing{Body: []byte("from amqp")})
	for _, ws := range []*websocket.Conn{a, b} {
		if got := next(ws); got != "from amqp" {
			t.Fatalf("got %q", got)
		}
	}
	// A message to another user reaches neither.
	mustPublish(t, ch, "amq.herald.user", "someone-else", amqp.Publishing{Body: []byte("not yours")})

	must(t, wsjson.Write(ctx, a, map[string]any{"op": "send", "to": "guest", "body": "from a socket"}))
	for _, ws := range []*websocket.Conn{a, b} {
		if got := next(ws); got != "from a socket" {
			t.Fatalf("got %q", got)
		}
	}

	// A socket that connects later gets its own queue at the next message.
	c := dial()
	req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("http://%s/api/users/%%2F/guest/messages", s.HTTPAddr()), strings.NewReader(`{"payload":"from the api"}`))
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST user message: %s", resp.Status)
	}
	for _, ws := range []*websocket.Conn{a, b, c} {
		if got := next(ws); got != "from the api" {
			t.Fatalf("got %q", got)
		}
	}

	// A closed socket leaves; the others still receive.
	b.Close(websocket.StatusNormalClosure, "")
	mustPublish(t, ch, "amq.herald.user", "guest", amqp.Publishing{Body: []byte("after b left")})
	for _, ws := range []*websocket.Conn{a, c} {
		if got := next(ws); got != "after b left" {
			t.Fatalf("got %q", got)
		}
	}
}
