package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// TestDeleteVHost: DELETE /api/vhosts/{vhost} closes the vhost's AMQP
// connections with 320 CONNECTION_FORCED, and its durable queue, the
// queue's persistent messages, its policy and limits do not come back
// after a restart on the same data directory. A deleted default vhost
// stays deleted too, as in RabbitMQ.
func TestDeleteVHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() *app.App {
		srv, err := app.New(app.Config{AMQPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dir, BcryptCost: 4,
			MemoryHighWatermark: -1, DiskFreeLimit: -1,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		must(t, err)
		must(t, srv.Start())
		return srv
	}
	stop := func(srv *app.App) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		must(t, srv.Shutdown(ctx))
	}
	srv := start()
	base := "http://" + srv.HTTPAddr().String()
	api := func(method, path string, body any, want int) []byte {
		t.Helper()
		st, b := httpDo(t, method, base+path, "guest", "guest", body)
		if st != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
		}
		return b
	}
	api("PUT", "/api/vhosts/prod", nil, 201)
	api("PUT", "/api/permissions/prod/guest", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}, 201)
	api("PUT", "/api/policies/prod/cap", map[string]any{"pattern": "^orders", "definition": map[string]any{"max-length": 100}}, 201)
	api("PUT", "/api/vhost-limits/prod/max-connections", map[string]any{"value": 10}, 204)

	conn, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/prod", srv.AMQPAddr()))
	must(t, err)
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch := mustChannel(t, conn)
	_, err = ch.QueueDeclare("orders", true, false, false, false, nil)
	must(t, err)
	must(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 3))
	for i := range 3 {
		mustPublish(t, ch, "", "orders", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(fmt.Sprint(i))})
	}
	for range 3 {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatal("publish nacked")
			}
		case <-timeAfterWait():
			t.Fatal("no confirm")
		}
	}
	// A connection on another vhost is left alone.
	rootConn, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr()))
	must(t, err)
	defer rootConn.Close()

	api("DELETE", "/api/vhosts/prod", nil, 204)
	e := waitClose(t, closed)
	if e.Code != amqp.ConnectionForced || !strings.Contains(e.Reason, "vhost 'prod' is deleted") {
		t.Fatalf("closed with %d %q; want 320 vhost 'prod' is deleted", e.Code, e.Reason)
	}
	if rootConn.IsClosed() {
		t.Fatal("a connection on / was closed")
	}
	api("GET", "/api/vhosts/prod", nil, 404)
	if _, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/prod", srv.AMQPAddr())); amqpCode(err) != amqp.NotAllowed {
		t.Fatalf("login to the deleted vhost: %v", err)
	}
	if srv.Broker().VHost("prod") != nil {
		t.Fatal("vhost still in the core")
	}
	// The default vhost may be deleted too; its connections go.
	rootClosed := rootConn.NotifyClose(make(chan *amqp.Error, 1))
	api("DELETE", "/api/vhosts/%2F", nil, 204)
	if e := waitClose(t, rootClosed); e.Code != amqp.ConnectionForced {
		t.Fatalf("root connection closed with %v", e)
	}
	stop(srv)

	srv = start()
	defer stop(srv)
	base = "http://" + srv.HTTPAddr().String()
	if b := string(api("GET", "/api/vhosts", nil, 200)); b != "[]\n" {
		t.Fatalf("vhosts after restart: %s", b)
	}
	var defs struct {
		VHosts, Queues, Policies, Parameters, Permissions []map[string]any
	}
	raw := api("GET", "/api/definitions", nil, 200)
	must(t, json.Unmarshal(raw, &defs))
	if len(defs.VHosts)+len(defs.Queues)+len(defs.Policies)+len(defs.Parameters)+len(defs.Permissions) != 0 {
		t.Fatalf("definitions after restart: %s", raw)
	}
	// Created again, the vhost is empty: the durable queue and its
	// persistent messages are gone for good.
	api("PUT", "/api/vhosts/prod", nil, 201)
	api("PUT", "/api/permissions/prod/guest", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}, 201)
	c2, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/prod", srv.AMQPAddr()))
	must(t, err)
	defer c2.Close()
	if queueExists(t, c2, "orders") {
		t.Fatal("the deleted vhost's durable queue came back")
	}
	ch2 := mustChannel(t, c2)
	q, err := ch2.QueueDeclare("orders", true, false, false, false, nil)
	must(t, err)
	if q.Messages != 0 {
		t.Fatalf("the recreated queue holds %d messages of the deleted one", q.Messages)
	}
	if b := string(api("GET", "/api/vhost-limits", nil, 200)); b != "[]\n" {
		t.Fatalf("limits after restart: %s", b)
	}
}

// TestHTTPPublishLimitsAndCounters: --max-publish-rate reaches the HTTP
// adapter (429 with Retry-After past a user's burst), and HTTP and
// WebSocket messages show in /metrics under "http" and "websocket".
func TestHTTPPublishLimitsAndCounters(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols(), func(c *app.Config) { c.MaxPublishRate = 5 })
	base := "http://" + s.HTTPAddr().String()
	if st, b := httpDo(t, "PUT", base+"/api/queues/%2F/web-q", "guest", "guest", map[string]any{"durable": false}); st != 201 {
		t.Fatalf("declare: %d %s", st, b)
	}
	// Publish until refused: at least the burst (5) goes through, a slow
	// machine may earn a token or two on the way.
	sent := 0
	for ; ; sent++ {
		req, _ := http.NewRequest("POST", base+"/api/exchanges/%2F/amq.default/publish", strings.NewReader(`{"routing_key":"web-q","payload":"m","payload_encoding":"string"}`))
		req.SetBasicAuth("guest", "guest")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			break
		}
		if resp.StatusCode != 200 || sent > 100 {
			t.Fatalf("publish %d: %d", sent, resp.StatusCode)
		}
	}
	if sent < 5 {
		t.Fatalf("limited after %d publishes; the burst is 5", sent)
	}
	if st, b := httpDo(t, "POST", base+"/api/queues/%2F/web-q/get", "guest", "guest", map[string]any{"count": 2, "ackmode": "ack_requeue_false"}); st != 200 {
		t.Fatalf("get: %d %s", st, b)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("guest:guest"))}}})
	must(t, err)
	defer ws.CloseNow()
	must(t, wsjson.Write(ctx, ws, map[string]any{"op": "publish", "exchange": "", "key": "web-q", "body": "ws", "confirm": true, "id": 1}))
	var m map[string]any
	must(t, wsjson.Read(ctx, ws, &m))
	if m["op"] != "confirmed" {
		t.Fatalf("ws answer %v", m)
	}

	_, b := httpDo(t, "GET", base+"/metrics", "guest", "guest", nil)
	for _, w := range []string{
		fmt.Sprintf(`herald_published_total{protocol="http"} %d`, sent),
		`herald_delivered_total{protocol="http"} 2`,
		`herald_acked_total{protocol="http"} 2`,
		`herald_published_total{protocol="websocket"} 1`,
	} {
		if !strings.Contains(string(b), w) {
			t.Fatalf("metrics lack %s:\n%s", w, grepLines(string(b), "herald_"))
		}
	}
}
