package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/broker"
)

// startHerald runs an in-process server with HTTP on 127.0.0.1:0 and
// returns its management URL.
func startHerald(t *testing.T, loadDefs string) (*app.App, string) {
	t.Helper()
	srv, err := app.New(app.Config{
		HTTPAddr: "127.0.0.1:0", AMQPAddr: app.Off, MQTTAddr: app.Off, STOMPAddr: app.Off,
		DataDir: t.TempDir(), MemoryHighWatermark: -1, DiskFreeLimit: -1, LoadDefinitions: loadDefs,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv, "http://" + srv.Addr("http").String()
}

// ctl runs `herald ctl --url URL args...` and returns its exit code and output.
func ctl(t *testing.T, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"ctl", "--url", url}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustCtl(t *testing.T, url string, args ...string) string {
	t.Helper()
	code, out, errOut := ctl(t, url, args...)
	if code != 0 {
		t.Fatalf("herald ctl %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

func TestCtl(t *testing.T) {
	dir := t.TempDir()
	defs := filepath.Join(dir, "defs.json")
	if err := os.WriteFile(defs, []byte(`{"queues":[{"name":"preloaded","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, url := startHerald(t, defs)

	// --load-definitions ran at start.
	if out := mustCtl(t, url, "list", "queues"); !strings.Contains(out, "preloaded") || !strings.HasPrefix(out, "vhost") {
		t.Fatalf("list queues:\n%s", out)
	}
	mustCtl(t, url, "declare", "queue", "dlq")
	mustCtl(t, url, "declare", "queue", "work", "--arguments", `{"x-max-length": 100}`)
	mustCtl(t, url, "declare", "exchange", "events", "--type", "topic")
	if out := mustCtl(t, url, "list", "exchanges"); !strings.Contains(out, "events") || !strings.Contains(out, "topic") {
		t.Fatalf("list exchanges:\n%s", out)
	}
	v := srv.Broker().VHost("/")
	for _, s := range []string{"m1", "m2", "m3"} {
		if _, err := v.Publisher().Publish(&broker.Message{RoutingKey: "dlq", Body: []byte(s)}); err != nil {
			t.Fatal(err)
		}
	}
	out := mustCtl(t, url, "peek", "queue", "dlq", "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "m1") || !strings.Contains(lines[2], "m2") {
		t.Fatalf("peek:\n%s", out)
	}
	id := strings.Fields(lines[2])[0]
	mustCtl(t, url, "delete", "message", "dlq", id)
	if out := mustCtl(t, url, "move", "messages", "dlq", "work"); !strings.Contains(out, "moved 2 message(s)") {
		t.Fatalf("move: %s", out)
	}
	work, _ := v.Queue("work")
	if got := work.Peek(10); len(got) != 2 || string(got[1].Message.Body) != "m3" {
		t.Fatalf("work holds %d", len(got))
	}
	mustCtl(t, url, "purge", "queue", "work")
	if work.Stats().Ready != 0 {
		t.Fatal("not purged")
	}
	mustCtl(t, url, "set", "policy", "cap", "--pattern", "^work$", "--definition", `{"max-length": 5}`)
	if out := mustCtl(t, url, "list", "policies"); !strings.Contains(out, "max-length=5") {
		t.Fatalf("policies:\n%s", out)
	}
	mustCtl(t, url, "add", "user", "ops", "pw", "--tags", "administrator")
	mustCtl(t, url, "set", "permissions", "ops")
	if out := mustCtl(t, url, "--json", "list", "users"); !strings.Contains(out, `"ops"`) || !strings.Contains(out, "administrator") {
		t.Fatalf("users:\n%s", out)
	}
	// ops logs in from the environment-free flags.
	if out := mustCtl(t, url, "--user", "ops", "--password", "pw", "list", "vhosts"); !strings.Contains(out, "/") {
		t.Fatalf("vhosts:\n%s", out)
	}
	file := filepath.Join(dir, "export.json")
	mustCtl(t, url, "export", "definitions", file)
	data, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(data), `"cap"`) || !strings.Contains(string(data), `"ops"`) {
		t.Fatalf("export: %v\n%s", err, data)
	}
	mustCtl(t, url, "delete", "queue", "dlq")
	mustCtl(t, url, "import", "definitions", file)
	if _, err := v.Queue("dlq"); err != nil {
		t.Fatalf("import did not recreate dlq: %v", err)
	}
	mustCtl(t, url, "list", "connections")
	mustCtl(t, url, "list", "consumers")
	mustCtl(t, url, "list", "bindings")
	mustCtl(t, url, "delete", "exchange", "events")

	// Errors say what went wrong and what to do.
	if code, _, e := ctl(t, url, "close", "connection", "nope"); code != 1 || !strings.Contains(e, "404") {
		t.Fatalf("close unknown: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "--password", "wrong", "list", "queues"); code != 1 || !strings.Contains(e, "login refused") {
		t.Fatalf("bad password: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "frobnicate", "queue"); code != 2 || !strings.Contains(e, "unknown command") {
		t.Fatalf("unknown: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "peek", "queue"); code != 2 || !strings.Contains(e, "usage") {
		t.Fatalf("missing arg: %d %s", code, e)
	}
}

// TestCtlVHosts: add vhost and delete vhost, which takes the vhost's
// queues with it.
func TestCtlVHosts(t *testing.T) {
	srv, url := startHerald(t, "")
	if out := mustCtl(t, url, "add", "vhost", "staging"); !strings.Contains(out, "vhost staging added") {
		t.Fatalf("add vhost: %q", out)
	}
	mustCtl(t, url, "--vhost", "staging", "set", "permissions", "guest")
	mustCtl(t, url, "--vhost", "staging", "declare", "queue", "jobs")
	if out := mustCtl(t, url, "list", "vhosts"); !strings.Contains(out, "staging") {
		t.Fatalf("list vhosts:\n%s", out)
	}
	if out := mustCtl(t, url, "delete", "vhost", "staging"); !strings.Contains(out, "vhost staging deleted") {
		t.Fatalf("delete vhost: %q", out)
	}
	if srv.Broker().VHost("staging") != nil {
		t.Fatal("vhost still there")
	}
	if out := mustCtl(t, url, "list", "queues"); strings.Contains(out, "jobs") {
		t.Fatalf("the deleted vhost's queue is listed:\n%s", out)
	}
	if code, _, e := ctl(t, url, "delete", "vhost", "staging"); code != 1 || !strings.Contains(e, "404") {
		t.Fatalf("delete a missing vhost: %d %s", code, e)
	}
	if code, _, e := ctl(t, url, "add", "vhost"); code != 2 || !strings.Contains(e, "usage: herald ctl add vhost NAME") {
		t.Fatalf("add vhost without a name: %d %s", code, e)
	}
}

func TestCtlUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	code, _, e := ctl(t, "http://"+addr, "list", "queues")
	if code != 1 || !strings.Contains(e, "connection refused — is herald running with --http?") {
		t.Fatalf("unreachable: %d %s", code, e)
	}
}

func TestCtlAlarms(t *testing.T) {
	srv, url := startHerald(t, "")
	if out := mustCtl(t, url, "list", "alarms"); !strings.Contains(out, "no alarms in effect") {
		t.Fatalf("no alarm: %q", out)
	}
	srv.Broker().SetAlarm("disk", true)
	code, out, errOut := ctl(t, url, "show", "alarms")
	if code != 1 || !strings.Contains(out, "disk") || !strings.Contains(errOut, "alarm") {
		t.Fatalf("disk alarm: exit %d, %q %q", code, out, errOut)
	}
}

// TestCtlStreams: a stream's named consumers and messages from the shell.
func TestCtlStreams(t *testing.T) {
	_, url := startHerald(t, "")
	mustCtl(t, url, "declare", "queue", "events", "--arguments", `{"x-queue-type":"stream"}`)
	for i := range 3 {
		req, _ := http.NewRequest("POST", url+"/api/exchanges/%2F/amq.default/publish",
			strings.NewReader(fmt.Sprintf(`{"routing_key":"events","payload":"e%d","payload_encoding":"string","properties":{}}`, i)))
		req.SetBasicAuth("guest", "guest")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("publish: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	if out := mustCtl(t, url, "list", "queues"); !strings.Contains(out, "stream") {
		t.Fatalf("list queues: %s", out)
	}
	if out := mustCtl(t, url, "read", "stream", "events", "1", "-n", "5"); !strings.Contains(out, "e1") || !strings.Contains(out, "e2") || strings.Contains(out, "e0") {
		t.Fatalf("read stream: %s", out)
	}
	mustCtl(t, url, "set", "stream-offset", "events", "billing", "2")
	if out := mustCtl(t, url, "list", "stream-consumers", "events"); !strings.Contains(out, "billing") || !strings.Contains(out, "2") {
		t.Fatalf("list stream-consumers: %s", out)
	}
	mustCtl(t, url, "delete", "stream-offset", "events", "billing")
	if out := mustCtl(t, url, "list", "stream-consumers", "events"); strings.Contains(out, "billing") {
		t.Fatalf("forgotten position still listed: %s", out)
	}
}
