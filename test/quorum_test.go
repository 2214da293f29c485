package test

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/broker"
)

var quorumArgs = amqp.Table{"x-queue-type": "quorum"}

// TestQuorumDeclare: a quorum queue is accepted with RabbitMQ's rules: it
// must be durable, not exclusive, not auto-delete and has no priorities
// (406, not coerced); its type cannot change on redeclaration, while for a
// classic queue x-queue-type "classic" and no x-queue-type are the same.
func TestQuorumDeclare(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("orders", true, false, false, false, quorumArgs); err != nil {
		t.Fatalf("declare quorum queue: %v", err)
	}
	if _, err := ch.QueueDeclare("orders", true, false, false, false, quorumArgs); err != nil {
		t.Fatalf("redeclare quorum queue: %v", err)
	}
	if _, err := ch.QueueDeclare("plain", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("plain", true, false, false, false, amqp.Table{"x-queue-type": "classic"}); err != nil {
		t.Fatalf("classic and absent x-queue-type must be equivalent: %v", err)
	}
	refused := []struct {
		what                           string
		name                           string
		durable, autoDelete, exclusive bool
		args                           amqp.Table
	}{
		{"non-durable", "q-transient", false, false, false, quorumArgs},
		{"exclusive", "q-exclusive", true, false, true, quorumArgs},
		{"auto-delete", "q-autodelete", true, true, false, quorumArgs},
		{"x-max-priority", "q-prio", true, false, false, amqp.Table{"x-queue-type": "quorum", "x-max-priority": 5}},
		{"redeclare without the type", "orders", true, false, false, nil},
		{"redeclare as classic", "orders", true, false, false, amqp.Table{"x-queue-type": "classic"}},
		{"classic redeclared as quorum", "plain", true, false, false, quorumArgs},
		{"unknown type", "q-other", true, false, false, amqp.Table{"x-queue-type": "mystery"}},
	}
	for _, r := range refused {
		c := mustChannel(t, conn)
		_, err := c.QueueDeclare(r.name, r.durable, r.autoDelete, r.exclusive, false, r.args)
		if amqpCode(err) != amqp.PreconditionFailed {
			t.Errorf("%s: %v, want 406", r.what, err)
		}
	}
	for _, name := range []string{"q-transient", "q-exclusive", "q-autodelete", "q-prio", "q-other"} {
		if queueExists(t, conn, name) {
			t.Errorf("refused queue %q exists", name)
		}
	}
	q, err := s.Broker().VHost("/").Queue("orders")
	if err != nil {
		t.Fatal(err)
	}
	if q.Type() != broker.QueueTypeQuorum || q.Args()["x-queue-type"] != "quorum" {
		t.Fatalf("listed as type %q with arguments %v", q.Type(), q.Args())
	}
	if p, _ := s.Broker().VHost("/").Queue("plain"); p.Type() != broker.QueueTypeClassic {
		t.Fatalf("plain queue listed as %q", p.Type())
	}
}

// TestQuorumDeliveryLimit: redeliveries carry x-delivery-count; past
// x-delivery-limit a message is dead-lettered with reason delivery_limit.
func TestQuorumDeliveryLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	if _, err := ch.QueueDeclare("q-dead", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("q-work", true, false, false, false, amqp.Table{
		"x-queue-type": "quorum", "x-delivery-limit": 2,
		"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "q-dead"}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, ch, "", "q-work", amqp.Publishing{Body: []byte("poison"), DeliveryMode: amqp.Persistent})
	ds := mustConsume(t, ch, "q-work", "", false)
	for i := range 3 {
		d := recv(t, ds)
		count, has := d.Headers["x-delivery-count"]
		switch {
		case i == 0 && (has || d.Redelivered):
			t.Fatalf("first delivery: redelivered %v, x-delivery-count %v", d.Redelivered, count)
		case i > 0 && (count != int64(i) || !d.Redelivered):
			t.Fatalf("delivery %d: redelivered %v, x-delivery-count %v; want %d", i+1, d.Redelivered, count, i)
		}
		if err := d.Nack(false, true); err != nil {
			t.Fatal(err)
		}
	}
	dl := recv(t, mustConsume(t, ch, "q-dead", "", true))
	if x := deathOf(t, dl); string(dl.Body) != "poison" || x["reason"] != "delivery_limit" || x["queue"] != "q-work" {
		t.Fatalf("dead letter %q with x-death %v", dl.Body, x)
	}
	expectNoDelivery(t, ds)
}

// TestQuorumDefaultDeliveryLimit: without x-delivery-limit a quorum queue
// allows 20 redeliveries, as RabbitMQ 4; then, with no dead-letter
// exchange, the message is dropped. A classic queue has no such limit, and
// x-delivery-limit -1 turns it off (RabbitMQ 4).
func TestQuorumDefaultDeliveryLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	ch := mustChannel(t, s.dial(t))
	for _, q := range []struct {
		name string
		args amqp.Table
	}{{"q-quorum", quorumArgs}, {"q-classic", nil}, {"q-unlimited", amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": -1}}} {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			t.Fatal(err)
		}
		mustPublish(t, ch, "", q.name, amqp.Publishing{Body: []byte("again")})
		for i := range broker.DefaultQuorumDeliveryLimit + 1 {
			d, ok, err := ch.Get(q.name, false)
			if err != nil || !ok {
				t.Fatalf("%s: get %d: %v %v", q.name, i+1, ok, err)
			}
			if err := d.Nack(false, true); err != nil {
				t.Fatal(err)
			}
		}
		depth := queueDepth(t, ch, q.name)
		if want := map[string]int{"q-quorum": 0, "q-classic": 1, "q-unlimited": 1}[q.name]; depth != want {
			t.Fatalf("%s after %d requeues: depth %d, want %d", q.name, broker.DefaultQuorumDeliveryLimit+1, depth, want)
		}
	}
}

// TestQuorumSurvivesRestart: a quorum queue is a durable definition like
// any other: after a restart it is still a quorum queue with its messages.
func TestQuorumSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, url := startOn(t, dir)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	ch := mustChannel(t, conn)
	if _, err := ch.QueueDeclare("q-kept", true, false, false, false, quorumArgs); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1))
	mustPublish(t, ch, "", "q-kept", amqp.Publishing{Body: []byte("kept"), DeliveryMode: amqp.Persistent})
	if c := <-confirms; !c.Ack {
		t.Fatal("publish nacked")
	}
	_ = conn.Close()
	stopServer(t, srv)

	srv, url = startOn(t, dir)
	defer stopServer(t, srv)
	q, err := srv.Broker().VHost("/").Queue("q-kept")
	if err != nil || q.Type() != broker.QueueTypeQuorum {
		t.Fatalf("after restart: %v, type %v", err, q)
	}
	conn, err = amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch = mustChannel(t, conn)
	if _, err := ch.QueueDeclare("q-kept", true, false, false, false, quorumArgs); err != nil {
		t.Fatalf("redeclare after restart: %v", err)
	}
	d, ok, err := ch.Get("q-kept", true)
	if err != nil || !ok || string(d.Body) != "kept" {
		t.Fatalf("after restart: %v %v %q", ok, err, d.Body)
	}
}
