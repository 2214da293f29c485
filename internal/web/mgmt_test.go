package web_test

import (
	"net/http"
	"testing"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/web"
)

func TestManagement(t *testing.T) {
	f := newFixture(t, web.Config{Version: "1.2.3"})
	f.call("PUT", "/api/exchanges/%2F/events", map[string]any{"type": "topic", "durable": true}, http.StatusCreated, nil)
	f.call("PUT", "/api/exchanges/%2F/events", map[string]any{"type": "topic", "durable": true}, http.StatusNoContent, nil)
	var e map[string]string
	f.call("PUT", "/api/exchanges/%2F/events", map[string]any{"type": "fanout"}, http.StatusBadRequest, &e)
	f.call("PUT", "/api/exchanges/%2F/bad", map[string]any{}, http.StatusBadRequest, &e)
	f.call("PUT", "/api/queues/%2F/audit", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 10}}, http.StatusCreated, nil)
	var loc string
	st, _, h := f.do("POST", "/api/bindings/%2F/e/events/q/audit", map[string]any{"routing_key": "user.*"})
	if loc = h.Get("Location"); st != http.StatusCreated || loc == "" {
		t.Fatalf("bind: %d %q", st, loc)
	}
	f.call("POST", "/api/bindings/%2F/e/nope/q/audit", map[string]any{}, http.StatusNotFound, &e)
	f.publish("events", "user.created", "u1")

	var ex admin.ExchangeJSON
	f.call("GET", "/api/exchanges/%2F/events", nil, http.StatusOK, &ex)
	if ex.Name != "events" || ex.Type != "topic" || !ex.Durable || ex.VHost != "/" {
		t.Fatalf("exchange %+v", ex)
	}
	f.call("GET", "/api/exchanges/%2F/amq.default", nil, http.StatusOK, &ex)
	if ex.Name != "" || ex.Type != "direct" {
		t.Fatalf("default exchange %+v", ex)
	}
	var exs []admin.ExchangeJSON
	f.call("GET", "/api/exchanges", nil, http.StatusOK, &exs)
	f.call("GET", "/api/exchanges/%2F", nil, http.StatusOK, &exs)
	if len(exs) != 8 { // RabbitMQ's seven and amq.herald.user
		t.Fatalf("%d exchanges", len(exs))
	}
	var q admin.QueueJSON
	f.call("GET", "/api/queues/%2F/audit", nil, http.StatusOK, &q)
	if q.Name != "audit" || !q.Durable || q.Messages != 1 || q.MessagesReady != 1 || q.Arguments["x-max-length"] != float64(10) || q.Consumers != 0 {
		t.Fatalf("queue %+v", q)
	}
	var qs []admin.QueueJSON
	f.call("GET", "/api/queues", nil, http.StatusOK, &qs)
	f.call("GET", "/api/queues/%2F", nil, http.StatusOK, &qs)
	if len(qs) != 1 {
		t.Fatalf("queues %+v", qs)
	}
	var bs []admin.BindingJSON
	f.call("GET", "/api/bindings/%2F", nil, http.StatusOK, &bs)
	found := false
	for _, b := range bs {
		found = found || (b.Source == "events" && b.Destination == "audit" && b.RoutingKey == "user.*" && b.DestinationType == "queue")
	}
	if !found || len(bs) != 2 {
		t.Fatalf("bindings %+v", bs)
	}
	f.call("GET", "/api/bindings", nil, http.StatusOK, &bs)
	var ov map[string]any
	f.call("GET", "/api/overview", nil, http.StatusOK, &ov)
	if ov["product_name"] != "Herald" || ov["rabbitmq_version"] != "1.2.3" ||
		ov["object_totals"].(map[string]any)["queues"] != float64(1) || ov["queue_totals"].(map[string]any)["messages"] != float64(1) {
		t.Fatalf("overview %v", ov)
	}
	var vs []map[string]any
	f.call("GET", "/api/vhosts", nil, http.StatusOK, &vs)
	if len(vs) != 1 || vs[0]["name"] != "/" || vs[0]["messages"] != float64(1) {
		t.Fatalf("vhosts %v", vs)
	}
	f.call("DELETE", "/api/queues/%2F/audit?if-empty=true", nil, http.StatusBadRequest, &e)
	f.call("DELETE", "/api/queues/%2F/audit/contents", nil, http.StatusNoContent, nil)
	f.call("GET", "/api/queues/%2F/audit", nil, http.StatusOK, &q)
	if q.Messages != 0 {
		t.Fatalf("purge left %d", q.Messages)
	}
	f.call("DELETE", "/api/queues/%2F/audit", nil, http.StatusNoContent, nil)
	f.call("GET", "/api/queues/%2F/audit", nil, http.StatusNotFound, &e)
	f.call("DELETE", "/api/exchanges/%2F/events", nil, http.StatusNoContent, nil)
	f.call("DELETE", "/api/exchanges/%2F/amq.topic", nil, http.StatusForbidden, &e)
	f.call("GET", "/api/exchanges/%2F/events", nil, http.StatusNotFound, &e)
	f.call("GET", "/api/queues/nohost", nil, http.StatusNotFound, &e)
	var status map[string]string
	f.call("GET", "/api/aliveness-test/%2F", nil, http.StatusOK, &status)
	if status["status"] != "ok" {
		t.Fatal(status)
	}
	f.call("GET", "/api/health/checks/alarms", nil, http.StatusOK, &status)
	f.call("GET", "/api/nothing/here", nil, http.StatusNotFound, &e)
	f.call("PATCH", "/api/queues/%2F/x", nil, http.StatusMethodNotAllowed, &e)

	// A second vhost is addressed by its name.
	f.b.AddVHost("prod")
	// A new vhost grants nobody anything, administrators included.
	if err := f.users.SetPermissions("guest", "prod", auth.AllPermissions); err != nil {
		t.Fatal(err)
	}
	f.call("PUT", "/api/queues/prod/a%2Fb", map[string]any{}, http.StatusCreated, nil)
	f.call("GET", "/api/queues/prod/a%2Fb", nil, http.StatusOK, &q)
	if q.Name != "a/b" || q.VHost != "prod" {
		t.Fatalf("queue %+v", q)
	}
}

func TestMountsOtherHandlers(t *testing.T) {
	mqtt := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	f := newFixture(t, web.Config{MQTTWebSocket: mqtt})
	// In-band protocols authenticate themselves: no basic auth in front.
	if st, _, _ := f.doAs("", "", "GET", "/mqtt", nil, nil); st != http.StatusTeapot {
		t.Fatalf("/mqtt: %d", st)
	}
	if st, _, _ := f.do("GET", "/stomp", nil); st != http.StatusNotFound {
		t.Fatalf("/stomp unmounted: %d", st)
	}
}
