package web_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/web"
)

// TestHTTPPublishRateLimit: --max-publish-rate gives every user one bucket
// for the HTTP publish endpoints; beyond it they answer 429 with
// Retry-After instead of holding the request, and another user is not
// affected.
func TestHTTPPublishRateLimit(t *testing.T) {
	f := newFixture(t, web.Config{MaxPublishRate: 3})
	q := f.declareQueue("limited")
	must(t, f.users.SetPermissions("alice", "/", auth.Permissions{Configure: ".*", Write: ".*", Read: ".*"}))
	body := map[string]any{"routing_key": "limited", "payload": "m", "payload_encoding": "string"}
	// publishUntilLimited publishes until a 429 (a slow machine may earn
	// a token or two on the way) and returns how many went through.
	publishUntilLimited := func(path string, body any) (int, []byte, http.Header) {
		t.Helper()
		for n := 0; n < 100; n++ {
			st, out, hdr := f.do("POST", path, body)
			switch st {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				return n, out, hdr
			default:
				t.Fatalf("POST %s: %d %s", path, st, out)
			}
		}
		t.Fatalf("POST %s: never limited", path)
		return 0, nil, nil
	}
	sent, out, hdr := publishUntilLimited("/api/exchanges/%2F/amq.default/publish", body)
	if sent < 3 || hdr.Get("Retry-After") != "1" {
		t.Fatalf("limited after %d publishes (the burst is 3), Retry-After %q", sent, hdr.Get("Retry-After"))
	}
	var e map[string]string
	if err := json.Unmarshal(out, &e); err != nil || e["error"] != "too_many_requests" || !strings.Contains(e["reason"], "3 messages a second per user") {
		t.Fatalf("429 body %s (%v)", out, err)
	}
	// The raw endpoint shares the user's bucket: limited at once, or
	// after the token or two a slow machine earned meanwhile.
	raw, _, _ := publishUntilLimited("/v1/publish/amq.default/limited", "raw")
	if raw > 2 {
		t.Fatalf("/v1/publish took %d publishes past guest's limit", raw)
	}
	// Another user has a bucket of its own.
	if st, out, _ := f.doAs("alice", "secret", "POST", "/v1/publish/amq.default/limited", "from alice", nil); st != 200 {
		t.Fatalf("alice: %d %s", st, out)
	}
	// Refused publishes were not routed.
	if n := q.Stats().Ready; n != sent+raw+1 {
		t.Fatalf("ready %d, want %d", n, sent+raw+1)
	}
	// The bucket refills (a token every 1/3 s).
	waitFor(t, "a token", func() bool {
		st, _, _ := f.do("POST", "/api/exchanges/%2F/amq.default/publish", body)
		return st == 200
	})
}

// TestWSPublishRateLimit: a /ws socket gets its own bucket and is slowed
// down (its reader waits), never refused: every publish is confirmed.
func TestWSPublishRateLimit(t *testing.T) {
	const rate, n = 40, 60 // a burst of 40, then 20 more at 40/s: >= 0.5 s
	f := newFixture(t, web.Config{MaxPublishRate: rate})
	q := f.declareQueue("ws-limited")
	c := f.dialWS("")
	start := time.Now()
	for i := range n {
		c.send(map[string]any{"op": "publish", "exchange": "", "key": "ws-limited", "body": fmt.Sprint(i), "confirm": true, "id": i})
	}
	for range n {
		c.expect("confirmed")
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("%d publishes at %d/s (burst %d) took %v; want about 0.5 s", n, rate, rate, d)
	}
	if got := q.Stats().Ready; got != n {
		t.Fatalf("ready %d, want %d", got, n)
	}
	// HTTP publishes by the same user have their own bucket (per user).
	f.call("POST", "/v1/publish/amq.default/ws-limited", "x", 200, nil)
}

// TestHTTPMessageMetrics: publishes, gets and fetches over plain HTTP
// count under protocol "http", /ws under "websocket", SSE deliveries
// under "sse".
func TestHTTPMessageMetrics(t *testing.T) {
	f := newFixture(t, web.Config{})
	mtr := metrics.New(f.b)
	f.declareQueue("m")
	for range 3 {
		f.call("POST", "/api/exchanges/%2F/amq.default/publish", map[string]any{"routing_key": "m", "payload": "x", "payload_encoding": "string"}, 200, nil)
	}
	f.call("POST", "/v1/publish/amq.default/m", "raw", 200, nil)
	// get 2 acknowledged (ack_requeue_false), 1 requeued; then fetch 2.
	var got []map[string]any
	f.call("POST", "/api/queues/%2F/m/get", map[string]any{"count": 2, "ackmode": "ack_requeue_false", "encoding": "auto"}, 200, &got)
	f.call("POST", "/api/queues/%2F/m/get", map[string]any{"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}, 200, &got)
	f.call("GET", "/v1/fetch/m?max=10&timeout=5s", nil, 200, &got)
	fetched := len(got) // at least one; the rest may not have been handed over yet
	f.declareQueue("w")
	c := f.dialWS("")
	c.subscribe(map[string]any{"id": "s", "queue": "w", "ack": "client"})
	c.send(map[string]any{"op": "publish", "exchange": "", "key": "w", "body": "ws"})
	m := c.expect("message")
	c.send(map[string]any{"op": "ack", "tag": m["tag"]})

	want := []string{
		`herald_published_total{protocol="http"} 4`,
		fmt.Sprintf(`herald_delivered_total{protocol="http"} %d`, 3+fetched),
		fmt.Sprintf(`herald_acked_total{protocol="http"} %d`, 2+fetched),
		`herald_published_total{protocol="websocket"} 1`,
		`herald_delivered_total{protocol="websocket"} 1`,
		`herald_acked_total{protocol="websocket"} 1`,
	}
	waitFor(t, "the websocket ack in /metrics", func() bool {
		rec := httptest.NewRecorder()
		mtr.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, w := range want {
			if !strings.Contains(rec.Body.String(), w) {
				return false
			}
		}
		return true
	})
}

// TestMessageRatesAPI: /api/queues/{vhost}/{name} and /api/overview serve
// message_stats.*_details.rate from the server's sampler; a rate becomes
// non-zero while messages flow and returns to 0 when they stop.
func TestMessageRatesAPI(t *testing.T) {
	f := newFixture(t, web.Config{StatsInterval: 20 * time.Millisecond})
	f.declareQueue("rated")
	type stats struct {
		MessageStats struct {
			Publish           uint64                 `json:"publish"`
			PublishDetails    struct{ Rate float64 } `json:"publish_details"`
			DeliverGetDetails struct{ Rate float64 } `json:"deliver_get_details"`
			AckDetails        struct{ Rate float64 } `json:"ack_details"`
		} `json:"message_stats"`
	}
	queue := func() stats {
		var s stats
		f.call("GET", "/api/queues/%2F/rated", nil, 200, &s)
		return s
	}
	overview := func() stats {
		var s stats
		f.call("GET", "/api/overview", nil, 200, &s)
		return s
	}
	// Keep messages flowing (publish, get and ack one per round) until
	// a sample shows them: the sampler's timing is its own.
	waitFor(t, "non-zero rates", func() bool {
		f.publish("", "rated", "m")
		f.call("POST", "/api/queues/%2F/rated/get", map[string]any{"count": 1, "ackmode": "ack_requeue_false"}, 200, nil)
		q, o := queue().MessageStats, overview().MessageStats
		return q.PublishDetails.Rate > 0 && q.DeliverGetDetails.Rate > 0 && q.AckDetails.Rate > 0 &&
			o.PublishDetails.Rate > 0 && o.AckDetails.Rate > 0
	})
	waitFor(t, "rates back to 0", func() bool {
		q, o := queue().MessageStats, overview().MessageStats
		return q.PublishDetails.Rate == 0 && q.DeliverGetDetails.Rate == 0 && q.AckDetails.Rate == 0 &&
			o.PublishDetails.Rate == 0 && q.Publish > 0
	})
	// Lists sort on a rate, as RabbitMQ's.
	f.call("GET", "/api/queues?sort=message_stats.publish_details.rate&sort_reverse=true", nil, 200, nil)
}

// TestDeleteVHostAPI: DELETE /api/vhosts/{vhost} closes the vhost's
// connections (a /ws socket gets 1008 with RabbitMQ's reason), deletes its
// queues, permissions and limits; the default vhost may go too.
func TestDeleteVHostAPI(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.call("PUT", "/api/vhosts/dev", nil, 201, nil)
	f.call("PUT", "/api/permissions/dev/guest", map[string]string{"configure": ".*", "write": ".*", "read": ".*"}, 201, nil)
	f.call("PUT", "/api/queues/dev/jobs", map[string]any{"durable": true}, 201, nil)
	f.call("PUT", "/api/policies/dev/cap", map[string]any{"pattern": "^jobs", "definition": map[string]any{"max-length": 10}}, 201, nil)
	st, out, _ := f.do("PUT", "/api/vhost-limits/dev/max-queues", map[string]any{"value": 5})
	if st != http.StatusNoContent {
		t.Fatalf("vhost limit: %d %s", st, out)
	}
	var vh map[string]any
	f.call("GET", "/api/vhosts/dev", nil, 200, &vh)
	if vh["name"] != "dev" {
		t.Fatalf("vhost %v", vh)
	}
	c := f.dialWS("?vhost=dev")
	c.subscribe(map[string]any{"id": "s", "queue": "jobs"})

	if st, _, _ := f.doAs("alice", "secret", "DELETE", "/api/vhosts/dev", nil, nil); st != http.StatusForbidden {
		t.Fatalf("non-administrator: %d", st)
	}
	f.call("DELETE", "/api/vhosts/dev", nil, 204, nil)
	// The subscription's cancellation may come before the close frame.
	var err error
	for err == nil {
		_, _, err = c.c.Read(c.ctx)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "vhost 'dev' is deleted" {
		t.Fatalf("websocket: %v", err)
	}
	f.call("GET", "/api/vhosts/dev", nil, 404, nil)
	f.call("GET", "/api/queues/dev/jobs", nil, 404, nil)
	f.call("DELETE", "/api/vhosts/dev", nil, 404, nil)
	var perms []map[string]any
	f.call("GET", "/api/permissions", nil, 200, &perms)
	for _, p := range perms {
		if p["vhost"] == "dev" {
			t.Fatalf("permission left: %v", p)
		}
	}
	var limits []map[string]any
	f.call("GET", "/api/vhost-limits", nil, 200, &limits)
	if len(limits) != 0 {
		t.Fatalf("limits left: %v", limits)
	}
	// Created again, it is empty.
	f.call("PUT", "/api/vhosts/dev", nil, 201, nil)
	var queues []map[string]any
	f.call("GET", "/api/queues/dev", nil, 200, &queues)
	if len(queues) != 0 {
		t.Fatalf("queues in the new vhost: %v", queues)
	}
	// The default vhost may be deleted, as in RabbitMQ.
	f.call("DELETE", "/api/vhosts/%2F", nil, 204, nil)
	if f.b.VHost("/") != nil {
		t.Fatal("default vhost still there")
	}
	if st, _, _ := f.do("POST", "/v1/publish/amq.default/q", "x"); st != http.StatusNotFound {
		t.Fatalf("publish to the deleted default vhost: %d", st)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
