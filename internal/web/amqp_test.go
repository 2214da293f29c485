package web_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/web"
)

// startAMQP serves AMQP on 127.0.0.1:0 against the fixture's broker.
func (f *fixture) startAMQP() string {
	f.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	h := amqp091.NewHandler(amqp091.Config{}, f.b, auth.NewDefaultUsers(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); h.ServeConn(ctx, nc) }()
		}
	}()
	f.t.Cleanup(func() {
		_ = ln.Close()
		cancel()
		wg.Wait()
	})
	return "amqp://guest:guest@" + ln.Addr().String() + "/"
}

func TestCrossProtocolAMQP(t *testing.T) {
	f := newFixture(t, web.Config{})
	conn, err := amqp.Dial(f.startAMQP())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}

	// AMQP publish -> WebSocket subscriber.
	ws := f.dialWS("")
	ws.subscribe(map[string]any{"id": "t", "exchange": "amq.topic", "key": "sensor.#"})
	err = ch.PublishWithContext(testCtx(t), "amq.topic", "sensor.kitchen.temp", false, false, amqp.Publishing{
		ContentType: "application/json", Body: []byte(`{"c":21}`), Headers: amqp.Table{"unit": "C"}, CorrelationId: "x1"})
	if err != nil {
		t.Fatal(err)
	}
	m := ws.expect("message")
	if m["body"] != `{"c":21}` || m["key"] != "sensor.kitchen.temp" || m["headers"].(map[string]any)["unit"] != "C" ||
		m["properties"].(map[string]any)["content_type"] != "application/json" {
		t.Fatalf("ws got %v", m)
	}

	// WebSocket publish -> AMQP consumer.
	q, err := ch.QueueDeclare("from-web", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]any{"op": "publish", "exchange": "amq.default", "key": "from-web", "body": "hi amqp",
		"properties": map[string]any{"delivery_mode": 2, "message_id": "w1"}, "headers": map[string]any{"n": 3}})
	select {
	case d := <-deliveries:
		if string(d.Body) != "hi amqp" || d.MessageId != "w1" || d.DeliveryMode != 2 || d.Headers["n"] != int64(3) {
			t.Fatalf("amqp got %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery over AMQP")
	}

	// An AMQP RPC server answers a WebSocket request through its reply address.
	if _, err := ch.QueueDeclare("rpc.upper", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	reqs, err := ch.Consume("rpc.upper", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.send(map[string]any{"op": "reply_address", "id": "r"})
	addr := ws.expect("reply_address")["address"].(string)
	ws.send(map[string]any{"op": "publish", "key": "rpc.upper", "body": "abc", "reply_to": addr, "properties": map[string]any{"correlation_id": "9"}})
	select {
	case d := <-reqs:
		if err := ch.PublishWithContext(testCtx(t), "", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: []byte("ABC")}); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no request over AMQP")
	}
	rep := ws.expect("message")
	if rep["body"] != "ABC" || rep["properties"].(map[string]any)["correlation_id"] != "9" {
		t.Fatalf("reply %v", rep)
	}
	if err := ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
		t.Fatal(err)
	}
}
