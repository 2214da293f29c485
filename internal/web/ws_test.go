package web_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/heraldmq/herald/internal/web"
)

func TestWSSubscribePublishAck(t *testing.T) {
	f := newFixture(t, web.Config{})
	q := f.declareQueue("tasks")
	c := f.dialWS("")
	if name := c.subscribe(map[string]any{"id": "s1", "queue": "tasks", "ack": "client", "prefetch": 1}); name != "tasks" {
		t.Fatalf("queue %q", name)
	}
	c.send(map[string]any{"op": "publish", "exchange": "", "key": "tasks", "body": "one", "confirm": true, "id": 7,
		"headers": map[string]any{"h": "v"}, "properties": map[string]any{"correlation_id": "k"}})
	// The confirm and the delivery race on the wire; take both.
	var msg map[string]any
	seen := map[string]bool{}
	for !seen["confirmed"] || !seen["message"] {
		m := c.recv()
		seen[m["op"].(string)] = true
		switch m["op"] {
		case "confirmed":
			if m["id"] != "7" || m["routed"] != true {
				t.Fatalf("confirm %v", m)
			}
		case "message":
			msg = m
		case "error":
			t.Fatal(m)
		}
	}
	if msg["sub"] != "s1" || msg["body"] != "one" || msg["key"] != "tasks" || msg["redelivered"] != false ||
		msg["headers"].(map[string]any)["h"] != "v" || msg["properties"].(map[string]any)["correlation_id"] != "k" {
		t.Fatalf("message %v", msg)
	}
	// prefetch 1: the second message waits for the ack.
	f.publish("", "tasks", "two")
	waitFor(t, "two to be ready", func() bool { return q.Stats().Ready == 1 })
	c.send(map[string]any{"op": "ack", "tag": msg["tag"]})
	m := c.expect("message")
	if m["body"] != "two" {
		t.Fatalf("second %v", m)
	}
	// nack with requeue brings it back redelivered.
	c.send(map[string]any{"op": "nack", "tag": m["tag"], "requeue": true})
	m = c.expect("message")
	if m["body"] != "two" || m["redelivered"] != true {
		t.Fatalf("redelivery %v", m)
	}
	c.send(map[string]any{"op": "touch", "tag": m["tag"]})
	c.expect("touched")
	c.send(map[string]any{"op": "nack", "tag": m["tag"], "requeue": false})
	c.send(map[string]any{"op": "ack", "tag": 999})
	if e := c.expect("error"); e["code"] != float64(412) {
		t.Fatalf("unknown tag %v", e)
	}
	waitFor(t, "the nack to discard", func() bool { st := q.Stats(); return st.Ready == 0 && st.Unacked == 0 })
	// Bad frames get an error frame; the socket stays usable.
	for _, bad := range []string{`{"op":"fly"}`, `not json`, `{"op":"subscribe","id":"x"}`, `{"op":"subscribe","id":"x","queue":"missing"}`} {
		if err := c.c.Write(c.ctx, websocket.MessageText, []byte(bad)); err != nil {
			t.Fatal(err)
		}
		if m := c.recv(); m["op"] != "error" {
			t.Fatalf("%s: %v", bad, m)
		}
	}
	c.send(map[string]any{"op": "unsubscribe", "id": "s1"})
	c.expect("unsubscribed")
	c.send(map[string]any{"op": "ping", "id": "p"})
	c.expect("pong")
	waitFor(t, "the consumer to go", func() bool { return q.Stats().Consumers == 0 })
}

func TestWSUnackedRequeuedOnClose(t *testing.T) {
	f := newFixture(t, web.Config{})
	q := f.declareQueue("held")
	c := f.dialWS("")
	c.subscribe(map[string]any{"id": "s", "queue": "held", "ack": "client"})
	f.publish("", "held", "x")
	c.expect("message")
	_ = c.c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the requeue", func() bool { st := q.Stats(); return st.Ready == 1 && st.Consumers == 0 })
}

func TestWSCompetingAndBroadcast(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.declareQueue("shared")
	a, b := f.dialWS(""), f.dialWS("")
	a.subscribe(map[string]any{"id": "s", "queue": "shared", "prefetch": 1, "ack": "client"})
	b.subscribe(map[string]any{"id": "s", "queue": "shared", "prefetch": 1, "ack": "client"})
	f.publish("", "shared", "m1")
	f.publish("", "shared", "m2")
	// With prefetch 1 each consumer holds exactly one: they compete.
	ma, mb := a.expect("message"), b.expect("message")
	if ma["body"] == mb["body"] {
		t.Fatalf("both got %v", ma["body"])
	}
	a.send(map[string]any{"op": "ack", "tag": ma["tag"]})
	b.send(map[string]any{"op": "ack", "tag": mb["tag"]})

	qa := a.subscribe(map[string]any{"id": "t", "exchange": "amq.topic", "key": "news.*"})
	qb := b.subscribe(map[string]any{"id": "t", "exchange": "amq.topic", "key": "news.*"})
	if qa == qb || !strings.HasPrefix(qa, "amq.gen-") {
		t.Fatalf("private queues %q %q", qa, qb)
	}
	f.publish("amq.topic", "news.today", "extra")
	f.publish("amq.topic", "sport.today", "ignored")
	for _, c := range []*wsClient{a, b} {
		if m := c.expect("message"); m["body"] != "extra" || m["sub"] != "t" || m["key"] != "news.today" {
			t.Fatalf("broadcast %v", m)
		}
	}
	// The private queue belongs to the socket and goes with it.
	_ = a.c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the private queue to go", func() bool { q, _ := f.b.VHost("/").Queue(qa); return q == nil })
}

func TestWSRequestReply(t *testing.T) {
	f := newFixture(t, web.Config{})
	f.declareQueue("rpc")
	server, client := f.dialWS(""), f.dialWS("")
	server.subscribe(map[string]any{"id": "srv", "queue": "rpc"})
	client.send(map[string]any{"op": "reply_address", "id": "r"})
	ra := client.expect("reply_address")
	addr := ra["address"].(string)
	client.send(map[string]any{"op": "publish", "exchange": "", "key": "rpc", "body": "ping?", "reply_to": addr,
		"properties": map[string]any{"correlation_id": "42"}})
	req := server.expect("message")
	props := req["properties"].(map[string]any)
	if props["reply_to"] != addr || props["correlation_id"] != "42" {
		t.Fatalf("request %v", req)
	}
	server.send(map[string]any{"op": "publish", "exchange": "", "key": props["reply_to"], "body": "pong!",
		"properties": map[string]any{"correlation_id": props["correlation_id"]}, "confirm": true, "id": "c"})
	if m := server.expect("confirmed"); m["routed"] != true {
		t.Fatalf("reply not routed %v", m)
	}
	rep := client.expect("message")
	if rep["sub"] != ra["sub"] || rep["body"] != "pong!" || rep["properties"].(map[string]any)["correlation_id"] != "42" {
		t.Fatalf("reply %v", rep)
	}
}

func TestWSSlowSubscriberClosed(t *testing.T) {
	f := newFixture(t, web.Config{Outbox: 4, SlowSubscriberDepth: 20})
	c := f.dialWS("")
	c.subscribe(map[string]any{"id": "t", "exchange": "amq.fanout", "key": ""})
	// The client reads nothing: TCP buffers fill, then the outbox, then
	// the private queue, until the server gives up on the socket.
	body := strings.Repeat("x", 64<<10)
	p := f.b.VHost("/").Publisher()
	for i := 0; ; i++ {
		if i > 100000 {
			t.Fatal("never closed")
		}
		f.logs.mu.Lock()
		closed := len(f.logs.msgs) > 0 && strings.Contains(strings.Join(f.logs.msgs, "|"), "slow")
		f.logs.mu.Unlock()
		if closed {
			break
		}
		if _, err := p.Publish(&messageFor("amq.fanout", body).Message); err != nil {
			t.Fatal(err)
		}
	}
	for {
		_, _, err := c.c.Read(c.ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation || ce.Reason != "too slow" {
			t.Fatalf("close: %v", err)
		}
		break
	}
}

func TestWSServerShutdown(t *testing.T) {
	f := newFixture(t, web.Config{})
	c := f.dialWS("")
	c.send(map[string]any{"op": "ping"})
	c.expect("pong")
	go f.srv.Close()
	_, _, err := c.c.Read(c.ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("close: %v", err)
	}
}
