package test

import (
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestServerNamedQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q1, err := ch.QueueDeclare("", false, false, true, false, nil)
	must(t, err)
	q2, err := ch.QueueDeclare("", false, false, true, false, nil)
	must(t, err)
	if !strings.HasPrefix(q1.Name, "amq.gen-") || q1.Name == q2.Name || len(q1.Name) <= len("amq.gen-") {
		t.Fatalf("server-named queues %q, %q", q1.Name, q2.Name)
	}
	if q1.Messages != 0 || q1.Consumers != 0 {
		t.Fatalf("declare-ok counts %d/%d", q1.Messages, q1.Consumers)
	}
	// The server-chosen name works for publish and passive declare.
	mustPublish(t, ch, "", q1.Name, amqp.Publishing{Body: []byte("x")})
	mustPublish(t, ch, "", q1.Name, amqp.Publishing{Body: []byte("y")})
	_, err = ch.Consume(q2.Name, "", false, false, false, false, nil)
	must(t, err)
	p, err := ch.QueueDeclarePassive(q1.Name, false, false, true, false, nil)
	must(t, err)
	if p.Name != q1.Name || p.Messages != 2 || p.Consumers != 0 {
		t.Fatalf("passive declare %+v", p)
	}
	p, err = ch.QueueDeclarePassive(q2.Name, false, false, true, false, nil)
	must(t, err)
	if p.Messages != 0 || p.Consumers != 1 {
		t.Fatalf("passive declare %+v", p)
	}
}

func TestQueueRedeclare(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("flags", true, false, false, false, amqp.Table{"x-max-length": int32(10)})
	must(t, err)
	// An identical redeclare is fine, and reports the current depth.
	mustPublish(t, ch, "", "flags", amqp.Publishing{Body: []byte("x")})
	q, err := ch.QueueDeclare("flags", true, false, false, false, amqp.Table{"x-max-length": int64(10)})
	must(t, err)
	if q.Messages != 1 {
		t.Fatalf("redeclare reports %d messages", q.Messages)
	}
	cases := []struct {
		name                  string
		durable, autoDel, exc bool
		args                  amqp.Table
		inReason              string
	}{
		{"durable", false, false, false, amqp.Table{"x-max-length": int32(10)}, "durable"},
		{"auto_delete", true, true, false, amqp.Table{"x-max-length": int32(10)}, "auto_delete"},
		{"args", true, false, false, amqp.Table{"x-max-length": int32(11)}, "x-max-length"},
		{"missing-arg", true, false, false, nil, "x-max-length"},
	}
	for _, tc := range cases {
		ch := mustChannel(t, c)
		_, err := ch.QueueDeclare("flags", tc.durable, tc.autoDel, tc.exc, false, tc.args)
		e := expectCode(t, err, amqp.PreconditionFailed)
		if !strings.Contains(e.Reason, "inequivalent arg '"+tc.inReason+"'") {
			t.Errorf("%s: reason %q", tc.name, e.Reason)
		}
	}
	// The connection survives the channel errors.
	assertAlive(t, c)
	if n := queueDepth(t, mustChannel(t, c), "flags"); n != 1 {
		t.Fatalf("queue changed by failed redeclares: depth %d", n)
	}
}

// TestPassiveDeclareMissing: 404 closes only that channel.
func TestPassiveDeclareMissing(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	other := mustChannel(t, c)
	q := tempQueue(t, other)
	ds := mustConsume(t, other, q, "", true)

	ch := mustChannel(t, c)
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	connClosed := c.NotifyClose(make(chan *amqp.Error, 1))
	_, err := ch.QueueDeclarePassive("does-not-exist", false, false, false, false, nil)
	e := expectCode(t, err, amqp.NotFound)
	if !strings.Contains(e.Reason, "does-not-exist") || e.Server != true || e.Recover != true {
		t.Fatalf("error %+v", e)
	}
	if e := waitClose(t, chClosed); e.Code != amqp.NotFound {
		t.Fatalf("channel close code %d", e.Code)
	}
	// The other channel keeps working, and so does the connection.
	mustPublish(t, other, "", q, amqp.Publishing{Body: []byte("alive")})
	if d := recv(t, ds); string(d.Body) != "alive" {
		t.Fatalf("got %q", d.Body)
	}
	assertAlive(t, c)
	select {
	case e := <-connClosed:
		t.Fatalf("connection closed: %v", e)
	default:
	}
	// Also for a passive exchange declare.
	ch = mustChannel(t, c)
	expectCode(t, ch.ExchangeDeclarePassive("no-such-x", "direct", false, false, false, false, nil), amqp.NotFound)
	assertAlive(t, c)
}

func TestExclusiveQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	owner := s.dial(t)
	och := mustChannel(t, owner)
	_, err := och.QueueDeclare("mine", false, false, true, false, nil)
	must(t, err)
	mustPublish(t, och, "", "mine", amqp.Publishing{Body: []byte("m")})

	other := s.dial(t)
	// Every use from another connection is 405 RESOURCE_LOCKED (a channel error).
	uses := map[string]func(ch *amqp.Channel) error{
		"declare": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare("mine", false, false, true, false, nil)
			return err
		},
		"declare-nonexclusive": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare("mine", false, false, false, false, nil)
			return err
		},
		"passive": func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive("mine", false, false, true, false, nil)
			return err
		},
		"consume": func(ch *amqp.Channel) error {
			_, err := ch.Consume("mine", "", false, false, false, false, nil)
			return err
		},
		"get": func(ch *amqp.Channel) error {
			_, _, err := ch.Get("mine", false)
			return err
		},
		"bind": func(ch *amqp.Channel) error { return ch.QueueBind("mine", "k", "amq.direct", false, nil) },
		"purge": func(ch *amqp.Channel) error {
			_, err := ch.QueuePurge("mine", false)
			return err
		},
		"delete": func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete("mine", false, false, false)
			return err
		},
	}
	for name, use := range uses {
		err := use(mustChannel(t, other))
		if amqpCode(err) != amqp.ResourceLocked {
			t.Errorf("%s from another connection: %v, want 405", name, err)
		}
	}
	assertAlive(t, other)
	// Publishing to it from another connection is allowed.
	newConfirmedPublisher(t, other).publish("", "mine", amqp.Publishing{Body: []byte("from-other")})
	if n := queueDepth(t, och, "mine"); n != 2 {
		t.Fatalf("depth %d, want 2 (purge/delete must not have happened)", n)
	}

	// The queue dies with its connection.
	must(t, owner.Close())
	eventually(t, "exclusive queue deleted", func() bool { return !queueExists(t, other, "mine") })
	// ...and the name is free again.
	_, err = mustChannel(t, other).QueueDeclare("mine", false, false, true, false, nil)
	must(t, err)
}

func TestAutoDeleteQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("ad-q", false, true, false, false, nil)
	must(t, err)
	// Not deleted before it ever had a consumer.
	mustPublish(t, ch, "", "ad-q", amqp.Publishing{Body: []byte("x")})
	if !queueExists(t, c, "ad-q") {
		t.Fatal("auto-delete queue deleted before any consumer")
	}
	ch1, ch2 := mustChannel(t, c), mustChannel(t, c)
	_, err = ch1.Consume("ad-q", "one", true, false, false, false, nil)
	must(t, err)
	_, err = ch2.Consume("ad-q", "two", true, false, false, false, nil)
	must(t, err)
	must(t, ch1.Cancel("one", false))
	if !queueExists(t, c, "ad-q") {
		t.Fatal("auto-delete queue deleted while a consumer remains")
	}
	must(t, ch2.Cancel("two", false))
	if queueExists(t, c, "ad-q") {
		t.Fatal("auto-delete queue still exists after its last consumer cancelled")
	}
	// Closing the consumer's channel counts as a cancel.
	_, err = ch.QueueDeclare("ad-q2", false, true, false, false, nil)
	must(t, err)
	ch3 := mustChannel(t, c)
	_, err = ch3.Consume("ad-q2", "", false, false, false, false, nil)
	must(t, err)
	must(t, ch3.Close())
	if queueExists(t, c, "ad-q2") {
		t.Fatal("auto-delete queue survived its consumer's channel close")
	}
}

func TestQueuePurgeAndDelete(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("pd", false, false, false, false, nil)
	must(t, err)
	for i := 0; i < 7; i++ {
		mustPublish(t, ch, "", "pd", amqp.Publishing{Body: []byte("x")})
	}
	// One message is unacked: purge leaves it, and counts only the ready ones.
	d, ok, err := ch.Get("pd", false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	n, err := ch.QueuePurge("pd", false)
	must(t, err)
	if n != 6 {
		t.Fatalf("purge returned %d, want 6", n)
	}
	n, err = ch.QueuePurge("pd", false)
	must(t, err)
	if n != 0 {
		t.Fatalf("second purge returned %d", n)
	}
	must(t, d.Reject(true)) // back in the queue
	if n := queueDepth(t, ch, "pd"); n != 1 {
		t.Fatalf("depth %d, want 1", n)
	}

	// if-empty refuses while a message is ready.
	_, err = ch.QueueDelete("pd", false, true, false)
	expectCode(t, err, amqp.PreconditionFailed)
	ch = mustChannel(t, c)
	// if-unused refuses while a consumer is attached.
	cch := mustChannel(t, c)
	_, err = cch.Consume("pd", "holder", false, false, false, false, nil)
	must(t, err)
	_, err = ch.QueueDelete("pd", true, false, false)
	expectCode(t, err, amqp.PreconditionFailed)
	ch = mustChannel(t, c)
	// The consumer took the ready message; cancelling leaves it unacked on
	// cch, and closing cch requeues it.
	must(t, cch.Cancel("holder", false))
	must(t, cch.Close())
	mustPublish(t, ch, "", "pd", amqp.Publishing{Body: []byte("y")})
	mustPublish(t, ch, "", "pd", amqp.Publishing{Body: []byte("z")})
	eventually(t, "three ready messages", func() bool { return queueDepth(t, ch, "pd") == 3 })
	n, err = ch.QueueDelete("pd", true, false, false)
	must(t, err)
	if n != 3 {
		t.Fatalf("delete returned %d, want 3", n)
	}
	if queueExists(t, c, "pd") {
		t.Fatal("queue still exists")
	}
	// Deleting a missing queue is not an error (RabbitMQ 3.x and later).
	n, err = ch.QueueDelete("pd", false, false, false)
	if err != nil || n != 0 {
		t.Fatalf("delete of a missing queue: %d %v", n, err)
	}
	// Empty and unused: both flags pass.
	_, err = ch.QueueDeclare("pd2", false, false, false, false, nil)
	must(t, err)
	n, err = ch.QueueDelete("pd2", true, true, false)
	if err != nil || n != 0 {
		t.Fatalf("delete if-unused if-empty: %d %v", n, err)
	}
}

func TestReservedNames(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("amq.mine", false, false, false, false, nil)
	e := expectCode(t, err, amqp.AccessRefused)
	if !strings.Contains(e.Reason, "amq.") {
		t.Fatalf("reason %q", e.Reason)
	}
	ch = mustChannel(t, c)
	expectCode(t, ch.ExchangeDeclare("amq.mine", "direct", false, false, false, false, nil), amqp.AccessRefused)
	ch = mustChannel(t, c)
	expectCode(t, ch.ExchangeDelete("amq.direct", false, false), amqp.AccessRefused)
	// Declaring a built-in exchange with its own properties is fine, as in RabbitMQ.
	ch = mustChannel(t, c)
	must(t, ch.ExchangeDeclare("amq.topic", "topic", true, false, false, false, nil))
	// The built-ins exist.
	for name, kind := range map[string]string{"amq.direct": "direct", "amq.fanout": "fanout", "amq.topic": "topic", "amq.headers": "headers", "amq.match": "headers"} {
		if !exchangeExists(t, c, name, kind) {
			t.Errorf("built-in exchange %s missing", name)
		}
	}
	assertAlive(t, c)
}

func TestExchangeDeclareAndDelete(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	must(t, ch.ExchangeDeclare("xd", "topic", true, false, false, false, nil))
	must(t, ch.ExchangeDeclare("xd", "topic", true, false, false, false, nil))
	expectCode(t, ch.ExchangeDeclare("xd", "direct", true, false, false, false, nil), amqp.PreconditionFailed)
	ch = mustChannel(t, c)
	expectCode(t, ch.ExchangeDeclare("xd", "topic", false, false, false, false, nil), amqp.PreconditionFailed)
	ch = mustChannel(t, c)
	q := tempQueue(t, ch)
	must(t, ch.QueueBind(q, "#", "xd", false, nil))
	expectCode(t, ch.ExchangeDelete("xd", true, false), amqp.PreconditionFailed)
	ch = mustChannel(t, c)
	must(t, ch.ExchangeDelete("xd", false, false))
	if exchangeExists(t, c, "xd", "topic") {
		t.Fatal("exchange still exists")
	}
	// Publishing to it now fails with 404 (see errors_test.go); the queue is unaffected.
	if !queueExists(t, c, q) {
		t.Fatal("bound queue was deleted with the exchange")
	}
	// Binding to a missing exchange or queue: 404.
	expectCode(t, ch.QueueBind(q, "#", "xd", false, nil), amqp.NotFound)
	ch = mustChannel(t, c)
	expectCode(t, ch.QueueBind("no-such-queue", "#", "amq.topic", false, nil), amqp.NotFound)
	assertAlive(t, c)
}

// TestExclusiveFlagRedeclare: changing the exclusive flag on redeclare is
// 405 RESOURCE_LOCKED in RabbitMQ (an exclusivity check, not an argument
// equivalence check).
func TestExclusiveFlagRedeclare(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("ex-flag", false, false, true, false, nil)
	must(t, err)
	_, err = ch.QueueDeclare("ex-flag", false, false, false, false, nil)
	expectCode(t, err, amqp.ResourceLocked)
	ch = mustChannel(t, c)
	_, err = ch.QueueDeclare("plain-flag", false, false, false, false, nil)
	must(t, err)
	_, err = ch.QueueDeclare("plain-flag", false, false, true, false, nil)
	expectCode(t, err, amqp.ResourceLocked)
	assertAlive(t, c)
}

func TestMiscNotFoundAndRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.Consume("no-such-queue", "", false, false, false, false, nil)
	expectCode(t, err, amqp.NotFound)
	ch = mustChannel(t, c)
	_, err = ch.QueuePurge("no-such-queue", false)
	expectCode(t, err, amqp.NotFound)
	ch = mustChannel(t, c)
	q := tempQueue(t, ch)
	// The default exchange cannot be bound to (RabbitMQ: 403).
	expectCode(t, ch.QueueBind(q, "k", "", false, nil), amqp.AccessRefused)
	ch = mustChannel(t, c)
	expectCode(t, ch.ExchangeBind("amq.direct", "k", "no-such-source", false, nil), amqp.NotFound)
	ch = mustChannel(t, c)
	expectCode(t, ch.ExchangeBind("no-such-dest", "k", "amq.direct", false, nil), amqp.NotFound)
	ch = mustChannel(t, c)
	// Deleting a missing exchange and unbinding a missing binding are no-ops.
	must(t, ch.ExchangeDelete("never-declared", false, false))
	must(t, ch.QueueUnbind(q, "never-bound", "amq.direct", nil))
	assertAlive(t, c)
}

// TestLastDeclaredQueue: an empty queue name means the channel's last
// declared queue (AMQP 0-9-1; RabbitMQ supports it).
func TestLastDeclaredQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	e := expectCode(t, ch.QueueBind("", "k", "amq.direct", false, nil), amqp.NotFound)
	if !strings.Contains(e.Reason, "no previously declared queue") {
		t.Fatalf("reason %q", e.Reason)
	}
	ch = mustChannel(t, c)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	must(t, err)
	must(t, ch.QueueBind("", "k", "amq.direct", false, nil))
	mustPublish(t, ch, "amq.direct", "k", amqp.Publishing{Body: []byte("x")})
	mustPublish(t, ch, "amq.direct", "k", amqp.Publishing{Body: []byte("y")})
	d, ok, err := ch.Get("", true)
	if err != nil || !ok || string(d.Body) != "x" || d.RoutingKey != "k" {
		t.Fatalf("get from last queue: %v %v", ok, err)
	}
	n, err := ch.QueuePurge("", false)
	if err != nil || n != 1 {
		t.Fatalf("purge last queue: %d %v", n, err)
	}
	if _, err := ch.QueueDelete("", false, false, false); err != nil {
		t.Fatal(err)
	}
	if queueExists(t, c, q.Name) {
		t.Fatal("last declared queue not deleted")
	}
}
