package web_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/protocol/httpapi"
	"github.com/heraldmq/herald/internal/web"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

func TestAuthFailures(t *testing.T) {
	f := newFixture(t, web.Config{})
	for _, c := range []struct{ user, pass string }{{"", ""}, {"alice", "wrong"}, {"nobody", "x"}} {
		st, body, h := f.doAs(c.user, c.pass, "GET", "/api/overview", nil, nil)
		if st != http.StatusUnauthorized {
			t.Fatalf("%q: status %d", c.user, st)
		}
		if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("%q: WWW-Authenticate %q", c.user, h.Get("WWW-Authenticate"))
		}
		var e map[string]string
		if err := json.Unmarshal(body, &e); err != nil || e["error"] != "not_authorized" || e["reason"] == "" {
			t.Fatalf("error body %s", body)
		}
	}
	// Every entry point is guarded, the streaming ones too.
	for _, p := range []string{"/ws", "/sse?queue=x", "/v1/fetch/x", "/api/queues"} {
		if st, _, _ := f.doAs("", "", "GET", p, nil, nil); st != http.StatusUnauthorized {
			t.Fatalf("%s: status %d", p, st)
		}
	}
	if st, _, _ := f.doAs("alice", "secret", "GET", "/api/overview", nil, nil); st != http.StatusOK {
		t.Fatalf("alice: %d", st)
	}
	// herald.js is public code.
	st, body, h := f.doAs("", "", "GET", "/herald.js", nil, nil)
	if st != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "javascript") || !strings.Contains(string(body), "class Herald") {
		t.Fatalf("herald.js: %d %q", st, h.Get("Content-Type"))
	}
	// So are its typings, next to it.
	st, body, h = f.doAs("", "", "GET", "/herald.d.ts", nil, nil)
	if st != http.StatusOK || !strings.Contains(h.Get("Content-Type"), "typescript") || !strings.Contains(string(body), "export declare class Herald") {
		t.Fatalf("herald.d.ts: %d %q", st, h.Get("Content-Type"))
	}
}

func TestCORS(t *testing.T) {
	f := newFixture(t, web.Config{CORSOrigins: []string{"https://app.example.com"}})
	pre := http.Header{"Origin": {"https://app.example.com"}, "Access-Control-Request-Method": {"POST"}}
	st, _, h := f.doAs("", "", "OPTIONS", "/api/exchanges/%2F/amq.default/publish", nil, pre)
	if st != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", st, h)
	}
	_, _, h = f.doAs("guest", "guest", "GET", "/api/overview", nil, http.Header{"Origin": {"https://evil.example.com"}})
	if h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin allowed: %v", h)
	}
}

func TestPublishGetRoundTrip(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.call("PUT", "/api/queues/%2F/orders", map[string]any{"durable": false}, http.StatusCreated, nil)
	var routed map[string]bool
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "orders", "payload": "hello", "payload_encoding": "string",
		"properties": map[string]any{"content_type": "text/plain", "delivery_mode": 2, "correlation_id": "c1",
			"reply_to": "back", "message_id": "m1", "priority": 3, "headers": map[string]any{"n": 7, "s": "x", "f": 1.5, "nested": map[string]any{"b": true}}},
	}, http.StatusOK, &routed)
	if !routed["routed"] {
		t.Fatal("not routed")
	}
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{
		"routing_key": "orders", "payload": "/wABAg==", "payload_encoding": "base64", "properties": map[string]any{}}, http.StatusOK, &routed)
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"routing_key": "nowhere", "payload": "x", "properties": map[string]any{}}, http.StatusOK, &routed)
	if routed["routed"] {
		t.Fatal("unroutable reported routed")
	}
	// Requeue mode leaves both messages in place, flagged redelivered.
	var msgs []jsonmsg.Got
	f.call("POST", "/api/queues/%2F/orders/get", map[string]any{"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}, http.StatusOK, &msgs)
	if len(msgs) != 2 || msgs[0].Redelivered || msgs[0].MessageCount != 1 {
		t.Fatalf("first get: %+v", msgs)
	}
	f.call("POST", "/api/queues/%2F/orders/get", map[string]any{"count": "5", "ackmode": "ack_requeue_false", "encoding": "auto", "truncate": 3}, http.StatusOK, &msgs)
	if len(msgs) != 2 {
		t.Fatalf("second get: %+v", msgs)
	}
	m := msgs[0]
	if !m.Redelivered || m.Payload != "hel" || m.PayloadBytes != 5 || m.PayloadEncoding != "string" || m.RoutingKey != "orders" || m.Exchange != "" {
		t.Fatalf("message: %+v", m)
	}
	p := m.Properties
	if p.ContentType != "text/plain" || p.DeliveryMode != 2 || p.CorrelationID != "c1" || p.ReplyTo != "back" || p.MessageID != "m1" || p.Priority != 3 {
		t.Fatalf("properties: %+v", p)
	}
	if p.Headers["n"] != float64(7) || p.Headers["s"] != "x" || p.Headers["f"] != 1.5 || p.Headers["nested"].(map[string]any)["b"] != true {
		t.Fatalf("headers: %+v", p.Headers)
	}
	if msgs[1].PayloadEncoding != "base64" || msgs[1].Payload != "/wAB" || msgs[1].PayloadBytes != 4 {
		t.Fatalf("binary: %+v", msgs[1])
	}
	f.call("POST", "/api/queues/%2F/orders/get", map[string]any{"count": 1, "ackmode": "ack_requeue_false"}, http.StatusOK, &msgs)
	if len(msgs) != 0 {
		t.Fatalf("queue not drained: %+v", msgs)
	}
	// Bad input gets RabbitMQ's error shape.
	var e map[string]string
	f.call("POST", "/api/exchanges/%2F/missing/publish", map[string]any{"routing_key": "x", "payload": "x"}, http.StatusNotFound, &e)
	if e["error"] == "" || !strings.Contains(e["reason"], "missing") {
		t.Fatalf("error body %v", e)
	}
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"payload": "%%", "payload_encoding": "base64"}, http.StatusBadRequest, &e)
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", `{"payload":`, http.StatusBadRequest, &e)
	f.call("POST", "/api/queues/%2F/orders/get", map[string]any{"ackmode": "bogus"}, http.StatusBadRequest, &e)
	f.call("POST", "/api/queues/%2F/missing/get", map[string]any{"ackmode": "ack_requeue_false"}, http.StatusNotFound, &e)
	f.call("POST", "/api/queues/nohost/orders/get", map[string]any{}, http.StatusNotFound, &e)
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"routing_key": "orders", "payload": "x", "properties": map[string]any{"user_id": "mallory"}}, http.StatusBadRequest, &e)
}

func TestPublishRaw(t *testing.T) {
	f := newFixture(t, web.Config{MaxBodySize: 1024})
	q := f.declareQueue("raw")
	hdr := http.Header{
		"Content-Type":                {"application/json"},
		"X-Herald-Correlation-Id":     {"c9"},
		"X-Herald-Delivery-Mode":      {"persistent"},
		"X-Herald-Header-Tenant-Name": {"acme"},
	}
	st, body, _ := f.doAs("guest", "guest", "POST", "/v1/publish/amq.default/raw?vhost=%2F", `{"a":1}`, hdr)
	if st != http.StatusOK || !strings.Contains(string(body), `"routed":true`) {
		t.Fatalf("publish: %d %s", st, body)
	}
	d, ok, err := q.Get(0, true)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	p := d.Message.Properties
	if string(d.Message.Body) != `{"a":1}` || p.ContentType != "application/json" || p.CorrelationID != "c9" || p.DeliveryMode != 2 || p.Headers["tenant-name"] != "acme" {
		t.Fatalf("message %+v", d.Message)
	}
	// Routing keys may contain slashes; topic routing works.
	tq := f.declareQueue("topicq")
	if err := f.b.VHost("/").BindQueue("topicq", "amq.topic", "a.#", nil, 0); err != nil {
		t.Fatal(err)
	}
	if st, body, _ = f.doAs("guest", "guest", "POST", "/v1/publish/amq.topic/a.b/c", "x", nil); st != http.StatusOK {
		t.Fatalf("%d %s", st, body)
	}
	if d, ok, _ := tq.Get(0, true); !ok || d.Message.RoutingKey != "a.b/c" {
		t.Fatalf("topic: %v %+v", ok, d.Message)
	}
	if st, _, _ = f.doAs("guest", "guest", "POST", "/v1/publish/amq.default/raw", strings.Repeat("x", 2048), nil); st != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized: %d", st)
	}
	if st, _, _ = f.doAs("guest", "guest", "POST", "/v1/publish/amq.default/raw", "x", http.Header{"X-Herald-Priority": {"high"}}); st != http.StatusBadRequest {
		t.Fatalf("bad priority: %d", st)
	}
	if st, _, _ = f.doAs("guest", "guest", "POST", "/v1/publish/amq.default/raw?vhost=nope", "x", nil); st != http.StatusNotFound {
		t.Fatalf("bad vhost: %d", st)
	}
}

func TestFetchTimesOutEmpty(t *testing.T) {
	f := newFixture(t, web.Config{})
	q := f.declareQueue("idle")
	start := time.Now()
	var msgs []httpapi.MessageJSON
	f.call("GET", "/v1/fetch/idle?timeout=150ms", nil, http.StatusOK, &msgs)
	if len(msgs) != 0 || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("got %v after %v", msgs, time.Since(start))
	}
	if st := q.Stats(); st.Consumers != 0 || st.Unacked != 0 {
		t.Fatalf("left behind %+v", st)
	}
}

func TestFetchReturnsOnArrival(t *testing.T) {
	f := newFixture(t, web.Config{})
	q := f.declareQueue("work")
	var wg sync.WaitGroup
	var msgs []httpapi.MessageJSON
	var took time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		st, body, _ := f.do("GET", "/v1/fetch/work?vhost=%2F&max=10&timeout=30s", nil)
		took = time.Since(start)
		if st == http.StatusOK {
			_ = json.Unmarshal(body, &msgs)
		}
	}()
	waitFor(t, "the fetch to consume", func() bool { return q.Stats().Consumers == 1 })
	f.publish("", "work", "job-1")
	wg.Wait()
	if len(msgs) != 1 || msgs[0].Body != "job-1" || took > 10*time.Second {
		t.Fatalf("got %+v after %v", msgs, took)
	}
	if st := q.Stats(); st.Ready != 0 || st.Unacked != 0 || st.Consumers != 0 {
		t.Fatalf("not acked: %+v", st)
	}
	// Messages already waiting come back at once, up to max.
	for range 5 {
		f.publish("", "work", "x")
	}
	f.call("GET", "/v1/fetch/work?max=3", nil, http.StatusOK, &msgs)
	if len(msgs) != 3 || q.Stats().Ready != 2 {
		t.Fatalf("batch: %d, ready %d", len(msgs), q.Stats().Ready)
	}
	var e map[string]string
	f.call("GET", "/v1/fetch/missing", nil, http.StatusNotFound, &e)
	f.call("GET", "/v1/fetch/work?max=zero", nil, http.StatusBadRequest, &e)
}
