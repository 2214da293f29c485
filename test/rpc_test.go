package test

import (
	"strconv"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// startRPCServer consumes requests from queue "rpc" on its own connection
// and answers each to its reply_to with the same correlation_id and the
// body upper-cased. It stops when the test's connections close.
func startRPCServer(t *testing.T, s *testServer) {
	t.Helper()
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclare("rpc", false, false, false, false, nil)
	must(t, err)
	reqs := mustConsume(t, ch, "rpc", "rpc-server", false)
	go func() {
		for d := range reqs {
			_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{
				CorrelationId: d.CorrelationId,
				Body:          []byte(strings.ToUpper(string(d.Body))),
				Headers:       amqp.Table{"reply_to_seen": d.ReplyTo},
			})
			_ = d.Ack(false)
		}
	}()
}

func TestRPCReplyQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	startRPCServer(t, s)
	c := s.dial(t)
	ch := mustChannel(t, c)
	reply, err := ch.QueueDeclare("", false, true, true, false, nil)
	must(t, err)
	if !strings.HasPrefix(reply.Name, "amq.gen-") {
		t.Fatalf("reply queue %q", reply.Name)
	}
	replies := mustConsume(t, ch, reply.Name, "", true)
	const n = 20
	for i := 0; i < n; i++ {
		mustPublish(t, ch, "", "rpc", amqp.Publishing{ReplyTo: reply.Name, CorrelationId: "id-" + strconv.Itoa(i), Body: []byte("req" + strconv.Itoa(i))})
	}
	got := map[string]string{}
	for _, d := range recvN(t, replies, n) {
		got[d.CorrelationId] = string(d.Body)
	}
	for i := 0; i < n; i++ {
		if got["id-"+strconv.Itoa(i)] != "REQ"+strconv.Itoa(i) {
			t.Fatalf("reply for id-%d = %q", i, got["id-"+strconv.Itoa(i)])
		}
	}
}

func TestRPCDirectReplyTo(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	startRPCServer(t, s)
	c := s.dial(t)
	ch := mustChannel(t, c)
	replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	must(t, err)
	for i := 0; i < 5; i++ {
		id := "d-" + strconv.Itoa(i)
		mustPublish(t, ch, "", "rpc", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: id, Body: []byte("hi" + strconv.Itoa(i))})
		d := recv(t, replies)
		if d.CorrelationId != id || string(d.Body) != "HI"+strconv.Itoa(i) {
			t.Fatalf("reply %q %q, want %s HI%d", d.CorrelationId, d.Body, id, i)
		}
		// The server saw a rewritten, per-channel reply address.
		seen, _ := d.Headers["reply_to_seen"].(string)
		if !strings.HasPrefix(seen, "amq.rabbitmq.reply-to.") {
			t.Fatalf("server saw reply_to %q", seen)
		}
	}
	// Another connection may reply to the rewritten address directly...
	d := func() amqp.Delivery {
		mustPublish(t, ch, "", "rpc", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "last"})
		return recv(t, replies)
	}()
	addr, _ := d.Headers["reply_to_seen"].(string)
	other := mustChannel(t, s.dial(t))
	rets := other.NotifyReturn(make(chan amqp.Return, 1))
	must(t, other.Publish("", addr, true, false, amqp.Publishing{Body: []byte("direct")}))
	if d := recv(t, replies); string(d.Body) != "direct" {
		t.Fatalf("got %q", d.Body)
	}
	// ...until the caller's channel closes: then the address is gone and a
	// mandatory reply is returned unroutable.
	must(t, ch.Close())
	must(t, other.Publish("", addr, true, false, amqp.Publishing{Body: []byte("stale")}))
	select {
	case r := <-rets:
		if r.ReplyCode != amqp.NoRoute {
			t.Fatalf("return %d", r.ReplyCode)
		}
	case <-timeAfterWait():
		t.Fatal("reply to a closed caller was not returned")
	}
}

func TestDirectReplyToRules(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)

	// Publishing with reply_to=amq.rabbitmq.reply-to without consuming it: 406.
	ch := mustChannel(t, c)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, ch, "amq.fanout", "", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to"})
	if e := waitClose(t, closed); e.Code != amqp.PreconditionFailed {
		t.Fatalf("close %d %s, want 406", e.Code, e.Reason)
	}
	// Consuming it with manual acks: 406.
	ch = mustChannel(t, c)
	_, err := ch.Consume("amq.rabbitmq.reply-to", "", false, false, false, false, nil)
	expectCode(t, err, amqp.PreconditionFailed)
	// Consuming it twice on one channel: 406.
	ch = mustChannel(t, c)
	_, err = ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	must(t, err)
	_, err = ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	expectCode(t, err, amqp.PreconditionFailed)
	assertAlive(t, c)
}

// TestDirectReplyToAfterCancel: once the reply consumer is cancelled,
// publishing with reply_to=amq.rabbitmq.reply-to is refused again.
func TestDirectReplyToAfterCancel(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	_, err := ch.Consume("amq.rabbitmq.reply-to", "rt", true, false, false, false, nil)
	must(t, err)
	must(t, ch.Cancel("rt", false))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, ch, "amq.fanout", "", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to"})
	if e := waitClose(t, closed); e.Code != amqp.PreconditionFailed {
		t.Fatalf("close %d %s, want 406", e.Code, e.Reason)
	}
}

// TestDirectReplyToDeclare: as in RabbitMQ, declaring the pseudo-queue
// succeeds (some clients declare it passively before consuming), and an
// RPC server can check that a caller is still there by declaring its
// rewritten reply address from another connection.
func TestDirectReplyToDeclare(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	startRPCServer(t, s)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q, err := ch.QueueDeclarePassive("amq.rabbitmq.reply-to", false, false, false, false, nil)
	must(t, err)
	if q.Name != "amq.rabbitmq.reply-to" || q.Messages != 0 {
		t.Fatalf("declare-ok %+v", q)
	}
	replies := mustConsume(t, ch, "amq.rabbitmq.reply-to", "", true)
	mustPublish(t, ch, "", "rpc", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", Body: []byte("x")})
	addr, _ := recv(t, replies).Headers["reply_to_seen"].(string)

	other := s.dial(t)
	och := mustChannel(t, other)
	q, err = och.QueueDeclarePassive(addr, false, false, false, false, nil)
	must(t, err)
	if q.Name != addr || q.Messages != 0 || q.Consumers != 1 {
		t.Fatalf("declare-ok %+v", q)
	}
	must(t, ch.Close())
	_, err = och.QueueDeclarePassive(addr, false, false, false, false, nil)
	expectCode(t, err, amqp.NotFound)
	och = mustChannel(t, other)
	_, err = och.QueueDeclarePassive("amq.rabbitmq.reply-to.bogus", false, false, false, false, nil)
	expectCode(t, err, amqp.NotFound)
}
