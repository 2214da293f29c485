package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

// A publish that a full reject-publish queue refuses is answered 503 over
// HTTP and with an error on /ws, never as routed and kept.
func TestPublishRefusedByFullQueue(t *testing.T) {
	f := newFixture(t, web.Config{})
	if _, err := f.b.VHost("/").DeclareQueue("full", broker.QueueOptions{Args: broker.Table{"x-max-length": int64(1), "x-overflow": "reject-publish"}}); err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"routing_key": "full", "payload": "x", "payload_encoding": "string", "properties": map[string]any{}}
	f.call("POST", "/api/exchanges/%2F/amq.default/publish", body, http.StatusOK, nil)
	status, resp, _ := f.do("POST", "/api/exchanges/%2F/amq.default/publish", body)
	if status != http.StatusServiceUnavailable || !strings.Contains(string(resp), "reject-publish") {
		t.Fatalf("publish to the full queue: %d %s, want 503 naming reject-publish", status, resp)
	}

	w := f.dialWS("")
	w.send(map[string]any{"op": "publish", "key": "full", "body": "y", "confirm": true, "id": 7})
	m := w.expect("error")
	if m["id"] != "7" || !strings.Contains(m["message"].(string), "reject-publish") {
		t.Fatalf("/ws answer %v, want an error for id 7 naming reject-publish", m)
	}
	if q, _ := f.b.VHost("/").Queue("full"); q.Stats().Ready != 1 {
		t.Fatalf("queue holds %d messages, want 1", q.Stats().Ready)
	}
}
