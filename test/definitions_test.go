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

// TestDurableDefinitionsSurviveRestart declares durable and transient
// things, restarts the server on the same data directory and checks that
// exactly the durable ones came back, as in RabbitMQ.
func TestDurableDefinitionsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() *app.App {
		srv, err := app.New(app.Config{AMQPAddr: "127.0.0.1:0", DataDir: dir,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	stop := func(srv *app.App) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}
	srv := start()
	conn, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.ExchangeDeclare("d-ex", "topic", true, false, false, false, amqp.Table{"alternate-exchange": "amq.fanout"}))
	must(ch.ExchangeDeclare("t-ex", "direct", false, false, false, false, nil))
	_, err = ch.QueueDeclare("d-q", true, false, false, false, amqp.Table{"x-message-ttl": int32(60000), "x-max-priority": int32(3)})
	must(err)
	_, err = ch.QueueDeclare("t-q", false, false, false, false, nil)
	must(err)
	must(ch.QueueBind("d-q", "a.#", "d-ex", false, nil))
	must(ch.QueueBind("t-q", "k", "d-ex", false, nil))
	must(ch.ExchangeBind("d-ex", "x", "amq.direct", false, nil))
	_ = conn.Close()
	stop(srv)

	srv = start()
	defer stop(srv)
	v := srv.Broker().VHost("/")
	if _, err := v.Exchange("d-ex"); err != nil {
		t.Errorf("durable exchange lost: %v", err)
	}
	if _, err := v.Exchange("t-ex"); err == nil {
		t.Error("transient exchange survived a restart")
	}
	q, err := v.Queue("d-q")
	if err != nil {
		t.Fatalf("durable queue lost: %v", err)
	}
	if _, err := v.Queue("t-q"); err == nil {
		t.Error("transient queue survived a restart")
	}
	// Redeclaring with the original arguments must be equivalent.
	conn2, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	if _, err := ch2.QueueDeclare("d-q", true, false, false, false, amqp.Table{"x-message-ttl": int32(60000), "x-max-priority": int32(3)}); err != nil {
		t.Errorf("redeclare after restart: %v (args now %v)", err, q.Args())
	}
	e, _ := v.Exchange("d-ex")
	bs := e.Bindings()
	if len(bs) != 1 || bs[0].Destination != "d-q" || bs[0].RoutingKey != "a.#" {
		t.Errorf("bindings of d-ex after restart: %+v (the one to the transient queue must be gone)", bs)
	}
	amqDirect, _ := v.Exchange("amq.direct")
	if bs := amqDirect.Bindings(); len(bs) != 1 || bs[0].Destination != "d-ex" {
		t.Errorf("exchange-to-exchange binding after restart: %+v", bs)
	}
	mustPublish(t, ch2, "d-ex", "a.b", amqp.Publishing{Body: []byte("routed")})
	if d, ok, err := ch2.Get("d-q", true); err != nil || !ok || string(d.Body) != "routed" {
		t.Errorf("routing after restart: %v %v %q", ok, err, d.Body)
	}
}
