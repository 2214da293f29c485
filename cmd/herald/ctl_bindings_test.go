package main

import (
	"strings"
	"testing"
)

func TestCtlBindings(t *testing.T) {
	srv, url := startHerald(t, "")
	mustCtl(t, url, "declare", "exchange", "events", "--type", "topic")
	mustCtl(t, url, "declare", "exchange", "audit", "--type", "fanout")
	mustCtl(t, url, "declare", "queue", "orders")
	if out := mustCtl(t, url, "declare", "binding", "events", "orders", "--routing-key", "order.*"); !strings.Contains(out, "declared") {
		t.Fatalf("declare binding: %q", out)
	}
	mustCtl(t, url, "declare", "binding", "events", "orders", "--routing-key", "k", "--arguments", `{"a": 1}`)
	mustCtl(t, url, "declare", "binding", "events", "orders", "--routing-key", "k", "--arguments", `{"a": 2}`)
	mustCtl(t, url, "declare", "binding", "events", "audit", "--destination-type", "exchange", "--routing-key", "#")
	out := mustCtl(t, url, "list", "bindings")
	for _, want := range []string{"order.*", "audit", "exchange"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list bindings lacks %q:\n%s", want, out)
		}
	}
	x, _ := srv.Broker().VHost("/").Exchange("events")
	if n := len(x.Bindings()); n != 4 {
		t.Fatalf("%d bindings", n)
	}
	mustCtl(t, url, "delete", "binding", "events", "orders", "--routing-key", "order.*")
	mustCtl(t, url, "delete", "binding", "events", "audit", "--destination-type", "exchange", "--routing-key", "#")
	// Two bindings with key k: the properties key picks one.
	code, _, e := ctl(t, url, "delete", "binding", "events", "orders", "--routing-key", "k")
	if code != 1 || !strings.Contains(e, "--properties-key") {
		t.Fatalf("ambiguous delete: %d %s", code, e)
	}
	pk := strings.TrimSpace(e[strings.LastIndex(e, "(")+1 : strings.LastIndex(e, ",")])
	mustCtl(t, url, "delete", "binding", "events", "orders", "--properties-key", pk)
	mustCtl(t, url, "delete", "binding", "events", "orders", "--routing-key", "k")
	if n := len(x.Bindings()); n != 0 {
		t.Fatalf("%d bindings left", n)
	}
	if code, _, e := ctl(t, url, "delete", "binding", "events", "orders", "--routing-key", "k"); code != 1 || !strings.Contains(e, "no binding") {
		t.Fatalf("delete missing binding: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "declare", "binding", "nope", "orders"); code != 1 || !strings.Contains(e, "404") {
		t.Fatalf("bind from a missing exchange: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "declare", "binding", "events", "orders", "--destination-type", "topic"); code != 2 || !strings.Contains(e, "--destination-type") {
		t.Fatalf("bad destination type: %d %s", code, e)
	}
}

func TestCtlPublishGet(t *testing.T) {
	srv, url := startHerald(t, "")
	mustCtl(t, url, "declare", "queue", "inbox")
	if out := mustCtl(t, url, "publish", "", "inbox", "hello", "--properties", `{"delivery_mode": 2}`); !strings.Contains(out, "published to amq.default") {
		t.Fatalf("publish: %q", out)
	}
	if out := mustCtl(t, url, "publish", "amq.direct", "nowhere", "x"); !strings.Contains(out, "NOT routed") {
		t.Fatalf("unroutable publish: %q", out)
	}
	// get looks by default: the message stays.
	if out := mustCtl(t, url, "get", "queue", "inbox"); !strings.Contains(out, "hello") {
		t.Fatalf("get: %q", out)
	}
	q, _ := srv.Broker().VHost("/").Queue("inbox")
	if q.Stats().Ready != 1 {
		t.Fatal("get took the message")
	}
	if out := mustCtl(t, url, "--json", "get", "queue", "inbox", "--ackmode", "ack_requeue_false"); !strings.Contains(out, `"payload": "hello"`) {
		t.Fatalf("get --json: %q", out)
	}
	if q.Stats().Ready != 0 {
		t.Fatal("ack_requeue_false left the message")
	}
	if out := mustCtl(t, url, "get", "queue", "inbox"); !strings.Contains(out, "no ready message") {
		t.Fatalf("get from empty: %q", out)
	}
	if code, _, e := ctl(t, url, "get", "queue", "inbox", "--ackmode", "eat"); code != 2 || !strings.Contains(e, "--ackmode") {
		t.Fatalf("bad ackmode: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "publish", "amq.direct"); code != 2 || !strings.Contains(e, "usage") {
		t.Fatalf("publish without key: %d %s", code, e)
	}
}

func TestCtlDeleteUserPolicyAndVHostLists(t *testing.T) {
	srv, url := startHerald(t, "")
	mustCtl(t, url, "add", "user", "ops", "pw")
	mustCtl(t, url, "set", "permissions", "ops")
	mustCtl(t, url, "delete", "permissions", "ops")
	mustCtl(t, url, "delete", "user", "ops")
	if code, _, e := ctl(t, url, "delete", "user", "ops"); code != 1 || !strings.Contains(e, "404") {
		t.Fatalf("delete missing user: %d %s", code, e)
	}
	mustCtl(t, url, "set", "policy", "cap", "--pattern", ".*", "--definition", `{"max-length": 1}`)
	mustCtl(t, url, "delete", "policy", "cap")
	if len(srv.Broker().VHost("/").Policies()) != 0 {
		t.Fatal("policy left")
	}

	// list ... --vhost narrows to that vhost; without it every vhost.
	mustCtl(t, url, "add", "vhost", "staging")
	mustCtl(t, url, "--vhost", "staging", "set", "permissions", "guest")
	mustCtl(t, url, "--vhost", "staging", "declare", "queue", "jobs")
	mustCtl(t, url, "declare", "queue", "mail")
	if out := mustCtl(t, url, "list", "queues", "--vhost", "staging"); !strings.Contains(out, "jobs") || strings.Contains(out, "mail") {
		t.Fatalf("list queues --vhost staging:\n%s", out)
	}
	if out := mustCtl(t, url, "list", "queues"); !strings.Contains(out, "jobs") || !strings.Contains(out, "mail") {
		t.Fatalf("list queues:\n%s", out)
	}
	if out := mustCtl(t, url, "list", "bindings", "--vhost", "/"); strings.Contains(out, "jobs") || !strings.Contains(out, "mail") {
		t.Fatalf("list bindings --vhost /:\n%s", out)
	}
	for _, what := range []string{"exchanges", "consumers", "connections", "policies"} {
		mustCtl(t, url, "list", what, "--vhost", "staging")
	}
	if code, _, e := ctl(t, url, "list", "queues", "--vhost", "nope"); code != 1 || !strings.Contains(e, "404") {
		t.Fatalf("list in a missing vhost: %d %s", code, e)
	}
}
