package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

func TestBindingEndpoints(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.declareQueue("q1")
	f.call("PUT", "/api/exchanges/%2F/x1", map[string]any{"type": "topic"}, http.StatusCreated, nil)
	f.call("PUT", "/api/exchanges/%2F/x2", map[string]any{"type": "fanout"}, http.StatusCreated, nil)

	// Create: 201, Location relative to the request as RabbitMQ answers.
	st, body, h := f.do("POST", "/api/bindings/%2F/e/x1/q/q1", map[string]any{"routing_key": "a b"})
	if st != http.StatusCreated || h.Get("Location") != "q1/a%2Bb" {
		t.Fatalf("bind: %d %s Location %q", st, body, h.Get("Location"))
	}
	st, body, h = f.do("POST", "/api/bindings/%2F/e/x1/q/q1", map[string]any{"routing_key": "k", "arguments": map[string]any{"x-k": "v"}})
	withArgs := strings.TrimPrefix(h.Get("Location"), "q1/")
	if st != http.StatusCreated || !strings.HasPrefix(withArgs, "k~") {
		t.Fatalf("bind with arguments: %d %s Location %q", st, body, h.Get("Location"))
	}
	f.call("POST", "/api/bindings/%2F/e/x1/e/x2", map[string]any{"routing_key": "e2e"}, http.StatusCreated, nil)

	var bs []admin.BindingJSON
	f.call("GET", "/api/bindings/%2F/e/x1/q/q1", nil, http.StatusOK, &bs)
	if len(bs) != 2 || bs[0].RoutingKey != "a b" || bs[0].PropertiesKey != "a+b" || bs[1].PropertiesKey != withArgs ||
		bs[1].Arguments["x-k"] != "v" || bs[0].Source != "x1" || bs[0].VHost != "/" || bs[0].DestinationType != "queue" {
		t.Fatalf("x1 -> q1: %+v", bs)
	}
	f.call("GET", "/api/bindings/%2F/e/x1/e/x2", nil, http.StatusOK, &bs)
	if len(bs) != 1 || bs[0].DestinationType != "exchange" || bs[0].Destination != "x2" || bs[0].PropertiesKey != "e2e" {
		t.Fatalf("x1 -> x2: %+v", bs)
	}
	// The default exchange's implicit binding, as RabbitMQ lists it.
	f.call("GET", "/api/bindings/%2F/e/amq.default/q/q1", nil, http.StatusOK, &bs)
	if len(bs) != 1 || bs[0].Source != "" || bs[0].RoutingKey != "q1" {
		t.Fatalf("default -> q1: %+v", bs)
	}
	f.call("GET", "/api/queues/%2F/q1/bindings", nil, http.StatusOK, &bs)
	if len(bs) != 3 || bs[0].Source != "" {
		t.Fatalf("q1 bindings: %+v", bs)
	}
	f.call("GET", "/api/exchanges/%2F/x1/bindings/source", nil, http.StatusOK, &bs)
	if len(bs) != 3 {
		t.Fatalf("x1 source: %+v", bs)
	}
	f.call("GET", "/api/exchanges/%2F/x2/bindings/destination", nil, http.StatusOK, &bs)
	if len(bs) != 1 || bs[0].Source != "x1" {
		t.Fatalf("x2 destination: %+v", bs)
	}
	f.call("GET", "/api/exchanges/%2F/x2/bindings/source", nil, http.StatusOK, &bs)
	if len(bs) != 0 {
		t.Fatalf("x2 source: %+v", bs)
	}

	// One binding by its properties key; rabbitmqadmin quotes the key
	// once more as a path segment ("+" is "%2B"), which the router undoes.
	var one admin.BindingJSON
	f.call("GET", "/api/bindings/%2F/e/x1/q/q1/a+b", nil, http.StatusOK, &one)
	f.call("GET", "/api/bindings/%2F/e/x1/q/q1/"+url.PathEscape(withArgs), nil, http.StatusOK, &one)
	if one.RoutingKey != "k" || one.Arguments["x-k"] != "v" {
		t.Fatalf("one binding: %+v", one)
	}
	f.call("DELETE", "/api/bindings/%2F/e/x1/q/q1/a%2Bb", nil, http.StatusNoContent, nil)
	f.call("DELETE", "/api/bindings/%2F/e/x1/q/q1/a%2Bb", nil, http.StatusNotFound, nil)
	f.call("DELETE", "/api/bindings/%2F/e/x1/q/q1/"+withArgs, nil, http.StatusNoContent, nil)
	f.call("DELETE", "/api/bindings/%2F/e/x1/e/x2/e2e", nil, http.StatusNoContent, nil)
	x1, _ := f.b.VHost("/").Exchange("x1")
	if n := len(x1.Bindings()); n != 0 {
		t.Fatalf("%d bindings left", n)
	}
	// The implicit binding cannot be deleted, as in RabbitMQ.
	f.call("DELETE", "/api/bindings/%2F/e/amq.default/q/q1/q1", nil, http.StatusForbidden, nil)

	// Unknown objects: 404.
	for _, p := range []string{
		"/api/bindings/nov/e/x1/q/q1", "/api/bindings/%2F/e/nox/q/q1", "/api/bindings/%2F/e/x1/q/noq",
		"/api/bindings/%2F/e/x1/e/nox", "/api/bindings/%2F/e/x1/z/q1", "/api/bindings/%2F/e/x1/q/q1/nokey",
		"/api/queues/%2F/noq/bindings", "/api/exchanges/%2F/nox/bindings/source", "/api/exchanges/%2F/nox/bindings/destination",
	} {
		f.call("GET", p, nil, http.StatusNotFound, nil)
	}
	f.call("POST", "/api/bindings/%2F/e/x1/q/noq", map[string]any{}, http.StatusNotFound, nil)
	// Bad bodies: 400 naming the field.
	for field, body := range map[string]string{
		"routing_key": `{"routing_key": 5}`,
		"arguments":   `{"arguments": [1]}`,
	} {
		st, out, _ := f.do("POST", "/api/bindings/%2F/e/x1/q/q1", body)
		var e map[string]string
		_ = json.Unmarshal(out, &e)
		if st != http.StatusBadRequest || !strings.Contains(e["reason"], field) {
			t.Errorf("%s: %d %s", body, st, out)
		}
	}
	// alice without permissions in "/" may not bind.
	f.users.ClearPermissions("alice", "/")
	st, _, _ = f.doAs("alice", "secret", "POST", "/api/bindings/%2F/e/x1/q/q1", map[string]any{}, nil)
	if st != http.StatusForbidden {
		t.Fatalf("alice binds: %d", st)
	}
}

// TestStringBooleans: rabbitmqadmin sends "durable": "false"; RabbitMQ's
// API takes it (parse_bool), and so does Herald's. Other strings are
// refused with the field named.
func TestStringBooleans(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.call("PUT", "/api/queues/%2F/q", `{"durable":"false","auto_delete":"true","arguments":{}}`, http.StatusCreated, nil)
	q, err := f.b.VHost("/").Queue("q")
	if err != nil || q.Durable() || !q.AutoDelete() {
		t.Fatalf("queue: %v durable=%v auto_delete=%v", err, q.Durable(), q.AutoDelete())
	}
	f.call("PUT", "/api/exchanges/%2F/x", `{"type":"topic","durable":"false","auto_delete":"false","internal":"true"}`, http.StatusCreated, nil)
	x, err := f.b.VHost("/").Exchange("x")
	if err != nil || x.Durable() || x.AutoDelete() || !x.Internal() {
		t.Fatalf("exchange: %v", err)
	}
	st, out, _ := f.do("PUT", "/api/queues/%2F/q2", `{"durable":"maybe"}`)
	if st != http.StatusBadRequest || !strings.Contains(string(out), "durable") {
		t.Fatalf("durable maybe: %d %s", st, out)
	}
}

// TestTrailingSlash: a path with a trailing slash is the same resource,
// as in RabbitMQ (amqp091-go's recovery tests GET /api/connections/).
func TestTrailingSlash(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.declareQueue("q1")
	var list []map[string]any
	f.call("GET", "/api/connections/", nil, http.StatusOK, &list)
	f.call("GET", "/api/queues/%2F/", nil, http.StatusOK, &list)
	if len(list) != 1 {
		t.Fatalf("queues: %v", list)
	}
	var q map[string]any
	f.call("GET", "/api/queues/%2F/q1/", nil, http.StatusOK, &q)
	f.call("GET", "/api/overview/", nil, http.StatusOK, &q)
	f.call("DELETE", "/api/queues/%2F/q1/", nil, http.StatusNoContent, nil)
	f.call("GET", "/api/nothing/", nil, http.StatusNotFound, nil)
	if st, _, h := f.do("PATCH", "/api/queues/", nil); st != http.StatusMethodNotAllowed || h.Get("Allow") == "" {
		t.Fatalf("PATCH: %d Allow %q", st, h.Get("Allow"))
	}
	// A route whose last segment may end in "/" still gets it: the
	// routing key "a/" differs from "a".
	f.call("PUT", "/api/queues/%2F/k", map[string]any{}, http.StatusCreated, nil)
	f.call("POST", "/api/bindings/%2F/e/amq.topic/q/k", map[string]any{"routing_key": "a/"}, http.StatusCreated, nil)
	f.call("POST", "/v1/publish/amq.topic/a/", "x", http.StatusOK, nil)
	k, _ := f.b.VHost("/").Queue("k")
	if k.Stats().Ready != 1 {
		t.Fatalf("routing key a/ did not route")
	}
}

// FuzzBindingRequests sends arbitrary paths below /api/bindings/%2F/e/ and
// bodies to the binding endpoints: no panic, no 500, and a binding
// created is found again at its Location.
func FuzzBindingRequests(f *testing.F) {
	f.Add("x/q/q", `{"routing_key":"a b~c","arguments":{"x":1}}`, uint8(1))
	f.Add("x/e/y", `{"routing_key":""}`, uint8(1))
	f.Add("x/q/q/~", ``, uint8(2))
	f.Add("amq.default/q/q/q", ``, uint8(0))
	f.Add("x/q/q/a%2Bb/", `{"arguments":[1]}`, uint8(2))
	f.Add("%zz/q/q", `{"routing_key":5}`, uint8(1))
	b := broker.New(broker.Options{})
	users := auth.NewDefaultUsers()
	srv := web.New(web.Config{}, b, users, nil)
	admin.Mount(srv)
	f.Cleanup(srv.Close)
	if _, err := b.VHost("/").DeclareQueue("q", broker.QueueOptions{}); err != nil {
		f.Fatal(err)
	}
	for _, x := range []string{"x", "y"} {
		if _, err := b.VHost("/").DeclareExchange(x, broker.ExchangeOptions{Kind: "topic"}); err != nil {
			f.Fatal(err)
		}
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, path, body string, method uint8) {
		m := []string{"GET", "POST", "DELETE"}[method%3]
		target := "/api/bindings/%2F/e/" + path
		if _, err := http.NewRequest(m, "http://h"+target, nil); err != nil {
			return
		}
		do := func(m, target, body string) *httptest.ResponseRecorder {
			req, err := http.NewRequest(m, "http://h"+target, strings.NewReader(body))
			if err != nil {
				t.Fatalf("%s %s: %v", m, target, err)
			}
			req.SetBasicAuth("guest", "guest")
			req.RemoteAddr = "127.0.0.1:1234"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s %q: %d %s", m, target, body, rec.Code, rec.Body)
			}
			return rec
		}
		rec := do(m, target, body)
		if m == "POST" && rec.Code == http.StatusCreated {
			loc := rec.Header().Get("Location")
			base := target[:strings.LastIndex(strings.TrimSuffix(target, "/"), "/")+1]
			if got := do("GET", base+loc, ""); got.Code != http.StatusOK {
				t.Fatalf("POST %s %q: Location %q answers %d", target, body, loc, got.Code)
			}
		}
	})
}
