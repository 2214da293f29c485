package test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

func startOn(t testing.TB, dir string) (*app.App, string) {
	t.Helper()
	srv, err := app.New(app.Config{AMQPAddr: "127.0.0.1:0", DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv, fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr())
}

func stopServer(t testing.TB, srv *app.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// TestPersistentMessagesSurviveRestart: persistent messages in a durable
// queue come back after a restart, in order, with their properties; one
// that was delivered but not acked comes back flagged redelivered; acked,
// transient, and transient-queue messages do not come back.
func TestPersistentMessagesSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, url := startOn(t, dir)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	if _, err := ch.QueueDeclare("keep", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("fleeting", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	ts := time.Unix(1700000000, 0)
	for i := 0; i < 10; i++ {
		mustPublish(t, ch, "", "keep", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(fmt.Sprint(i)),
			ContentType: "text/plain", CorrelationId: fmt.Sprint("c", i), Timestamp: ts, Headers: amqp.Table{"n": int32(i), "tags": []any{"a", "b"}}})
	}
	mustPublish(t, ch, "", "keep", amqp.Publishing{DeliveryMode: amqp.Transient, Body: []byte("transient")})
	mustPublish(t, ch, "", "fleeting", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("in a transient queue")})
	for i := 0; i < 12; i++ {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("nack for %d", c.DeliveryTag)
			}
		case <-timeAfterWait():
			t.Fatalf("missing confirm %d", i+1)
		}
	}
	// Ack 0 and 1; take 2 without acking (it must come back redelivered).
	cons, _ := conn.Channel()
	_ = cons.Qos(3, 0, false)
	ds := mustConsume(t, cons, "keep", "", false)
	got := recvN(t, ds, 3)
	_ = got[0].Ack(false)
	_ = got[1].Ack(false)
	// Make sure the acks reached the broker before the restart.
	eventually(t, "acks to land", func() bool {
		q, _ := srv.Broker().VHost("/").Queue("keep")
		return q.Stats().Acks == 2
	})
	_ = conn.Close()
	stopServer(t, srv)

	srv, url = startOn(t, dir)
	defer stopServer(t, srv)
	conn2, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	var bodies []string
	for {
		d, ok, err := ch2.Get("keep", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		bodies = append(bodies, string(d.Body))
		if string(d.Body) == "2" && !d.Redelivered {
			t.Error("the delivered, unacked message came back without redelivered")
		}
		if string(d.Body) == "5" {
			if d.ContentType != "text/plain" || d.CorrelationId != "c5" || !d.Timestamp.Equal(ts) || d.Headers["n"] != int32(5) || d.DeliveryMode != amqp.Persistent {
				t.Errorf("properties after restart: %+v", d)
			}
			if tags, _ := d.Headers["tags"].([]any); len(tags) != 2 || tags[0] != "a" {
				t.Errorf("array header after restart: %v", d.Headers["tags"])
			}
		}
	}
	if fmt.Sprint(bodies) != "[2 3 4 5 6 7 8 9]" {
		t.Errorf("recovered %v, want [2 3 4 5 6 7 8 9]", bodies)
	}
	if _, err := ch2.QueueDeclarePassive("fleeting", false, false, false, false, nil); err == nil {
		t.Error("the transient queue survived")
	}
}

// TestDelayedMessagesSurviveRestart: a persistent message held by a
// durable delayed exchange is delivered on time after a restart, never
// before it is due.
func TestDelayedMessagesSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, url := startOn(t, dir)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	if err := ch.ExchangeDeclare("later", "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "direct"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("due", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("due", "k", "later", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	sent := time.Now()
	mustPublish(t, ch, "later", "k", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("tick"), Headers: amqp.Table{"x-delay": int32(1500)}})
	if c := <-confirms; !c.Ack {
		t.Fatal("nack")
	}
	_ = conn.Close()
	stopServer(t, srv)

	srv, url = startOn(t, dir)
	defer stopServer(t, srv)
	conn2, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	ds := mustConsume(t, ch2, "due", "", true)
	d := recv(t, ds)
	if el := time.Since(sent); string(d.Body) != "tick" || el < 1500*time.Millisecond {
		t.Fatalf("got %q after %v (due after 1.5s)", d.Body, el)
	}
}
