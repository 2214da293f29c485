package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

// TestIdleWSParks: an idle /ws socket leaves the poller only to run what
// comes (a broadcast, a WebSocket ping, a client frame) and parks again;
// shutting down with it parked ends it.
func TestIdleWSParks(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the idle poller is Linux only")
	}
	b := broker.New(broker.Options{})
	users := auth.NewDefaultUsers()
	srv := web.New(web.Config{}, b, users, slog.New(slog.DiscardHandler))
	s := Mount(srv)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	closed := false
	defer func() {
		if !closed {
			srv.Close()
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("guest", "guest")
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": req.Header["Authorization"]}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := func(op string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := wsjson.Read(ctx, c, &m); err != nil {
			t.Fatal(err)
		}
		if m["op"] != op {
			t.Fatalf("got %v, want op %q", m, op)
		}
		return m
	}
	parked := func() {
		t.Helper()
		for s.poller.Parked() != 1 {
			if ctx.Err() != nil {
				t.Fatal("the idle socket did not park")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if err := wsjson.Write(ctx, c, map[string]any{"op": "subscribe", "id": "s", "exchange": "amq.fanout"}); err != nil {
		t.Fatal(err)
	}
	read("subscribed")
	parked()

	// A broadcast reaches the parked socket (writes need no reader).
	if _, err := b.VHost("/").Publisher().Publish(&broker.Message{Exchange: "amq.fanout", Body: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if m := read("message"); m["body"] != "hello" {
		t.Fatalf("message %v", m)
	}
	parked()

	// A WebSocket ping and a frame sent while parked are answered.
	pong := make(chan error, 1)
	go func() { pong <- c.Ping(ctx) }()
	// Only a read takes the control pong in, and it may come after the
	// JSON pong: ping again until Ping has its answer.
	for n := 1; ; n++ {
		id := fmt.Sprint("p", n)
		if err := wsjson.Write(ctx, c, map[string]any{"op": "ping", "id": id}); err != nil {
			t.Fatal(err)
		}
		if m := read("pong"); m["id"] != id {
			t.Fatalf("pong %v, want id %s", m, id)
		}
		select {
		case err := <-pong:
			if err != nil {
				t.Fatal("websocket ping:", err)
			}
		default:
			continue
		}
		break
	}
	parked()

	// Shutdown with the socket parked closes it (going away); the
	// leak check (TestMain) finds no goroutine left.
	go func() {
		_, _, err := c.Read(ctx) // reads the close frame, answers it
		pong <- err
	}()
	srv.Close()
	closed = true
	if err := <-pong; websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after shutdown: %v, want close 1001", err)
	}
	if n := s.poller.Parked(); n != 0 {
		t.Fatalf("%d sockets still parked", n)
	}
}
