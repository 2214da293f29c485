package test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/auth"
)

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	url := strings.Replace(s.URL, "guest:guest", "guest:wrong", 1)
	c, err := amqp.Dial(url)
	if err == nil {
		c.Close()
		t.Fatal("login with a wrong password succeeded")
	}
	// amqp091-go does not announce the authentication_failure_close
	// capability, so (as RabbitMQ does for such clients) the server drops
	// the socket without a connection.close, and amqp091-go reports its own
	// ErrCredentials, code 403 ACCESS_REFUSED. The capability path, where
	// the server sends connection.close 403, is in connection_test.go.
	expectCode(t, err, amqp.AccessRefused)
	if !errors.Is(err, amqp.ErrCredentials) {
		t.Fatalf("err = %#v, want amqp.ErrCredentials", err)
	}
	// Unknown user: the same answer (no user enumeration).
	_, err = amqp.Dial(strings.Replace(s.URL, "guest:guest", "nobody:guest", 1))
	expectCode(t, err, amqp.AccessRefused)
	// AMQPLAIN is refused the same way.
	_, err = amqp.DialConfig(s.URL, amqp.Config{SASL: []amqp.Authentication{&amqp.AMQPlainAuth{Username: "guest", Password: "nope"}}})
	expectCode(t, err, amqp.AccessRefused)
	// And the right password works with both mechanisms.
	c, err = amqp.DialConfig(s.URL, amqp.Config{SASL: []amqp.Authentication{&amqp.AMQPlainAuth{Username: "guest", Password: "guest"}}})
	must(t, err)
	assertAlive(t, c)
	must(t, c.Close())
}

func TestCustomUsers(t *testing.T) {
	t.Parallel()
	users := auth.NewUsers()
	users.Put("alice", "s3cret", false)
	s := startServer(t, withUsers(users))
	_, err := amqp.Dial(s.URL) // guest does not exist here
	expectCode(t, err, amqp.AccessRefused)
	c, err := amqp.Dial(strings.Replace(s.URL, "guest:guest", "alice:s3cret", 1))
	must(t, err)
	defer c.Close()
	assertAlive(t, c)
}

func TestUnknownVHost(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	_, err := amqp.Dial(s.URL + "no-such-vhost")
	e := expectCode(t, err, amqp.NotAllowed)
	if !strings.Contains(e.Reason, "no-such-vhost") {
		t.Fatalf("reason %q", e.Reason)
	}
}

func TestPublishToMissingExchange(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	keep := mustChannel(t, c)
	q := tempQueue(t, keep)
	ch := mustChannel(t, c)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, ch, "no-such-exchange", "k", amqp.Publishing{Body: []byte("x")})
	e := waitClose(t, closed)
	if e.Code != amqp.NotFound || !strings.Contains(e.Reason, "no-such-exchange") {
		t.Fatalf("close %d %q", e.Code, e.Reason)
	}
	if err := ch.Publish("", q, false, false, amqp.Publishing{}); !errors.Is(err, amqp.ErrClosed) {
		t.Fatalf("publish on the closed channel: %v", err)
	}
	// Only the channel died.
	mustPublish(t, keep, "", q, amqp.Publishing{Body: []byte("fine")})
	if d, ok, err := keep.Get(q, true); err != nil || !ok || string(d.Body) != "fine" {
		t.Fatalf("other channel: %v %v", ok, err)
	}
	assertAlive(t, c)
}

func TestMessageTooLarge(t *testing.T) {
	t.Parallel()
	s := startServer(t, withMaxMessageSize(1024))
	c := s.dialConfig(t, amqp.Config{FrameSize: 4096})
	connClosed := c.NotifyClose(make(chan *amqp.Error, 1))
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: make([]byte, 1024)}) // at the limit: fine

	bad := mustChannel(t, c)
	closed := bad.NotifyClose(make(chan *amqp.Error, 1))
	// Larger than one frame, so body frames keep arriving after the error.
	mustPublish(t, bad, "", q, amqp.Publishing{Body: make([]byte, 10000)})
	e := waitClose(t, closed)
	if e.Code != amqp.PreconditionFailed || !strings.Contains(e.Reason, "10000") || !strings.Contains(e.Reason, "1024") {
		t.Fatalf("close %d %q", e.Code, e.Reason)
	}
	// The connection survives, and the oversized message went nowhere.
	if d, ok, err := ch.Get(q, true); err != nil || !ok || len(d.Body) != 1024 {
		t.Fatalf("get: %v %v", ok, err)
	}
	if _, ok, err := ch.Get(q, true); err != nil || ok {
		t.Fatalf("oversized message was enqueued: %v %v", ok, err)
	}
	assertAlive(t, c)
	select {
	case e := <-connClosed:
		t.Fatalf("connection closed: %v", e)
	default:
	}
}

func TestInvalidExchangeType(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	connClosed := c.NotifyClose(make(chan *amqp.Error, 1))
	ch := mustChannel(t, c)
	err := ch.ExchangeDeclare("bad-type", "nonsense", false, false, false, false, nil)
	expectCode(t, err, amqp.CommandInvalid)
	e := waitClose(t, connClosed)
	if e.Code != amqp.CommandInvalid || !strings.Contains(e.Reason, "nonsense") {
		t.Fatalf("connection close %d %q", e.Code, e.Reason)
	}
	if !c.IsClosed() {
		t.Fatal("connection still open")
	}
}

func TestConsumerTagReuse(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	connClosed := c.NotifyClose(make(chan *amqp.Error, 1))
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	_, err := ch.Consume(q, "dup", false, false, false, false, nil)
	must(t, err)
	_, err = ch.Consume(q, "dup", false, false, false, false, nil)
	expectCode(t, err, amqp.NotAllowed)
	e := waitClose(t, connClosed)
	if e.Code != amqp.NotAllowed || !strings.Contains(e.Reason, "dup") {
		t.Fatalf("connection close %d %q", e.Code, e.Reason)
	}
}

// TestConsumerTagReuseOtherChannel: tags are per channel, so the same tag
// on another channel is fine.
func TestConsumerTagReuseOtherChannel(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch1, ch2 := mustChannel(t, c), mustChannel(t, c)
	q := tempQueue(t, ch1)
	_, err := ch1.Consume(q, "same", false, false, false, false, nil)
	must(t, err)
	_, err = ch2.Consume(q, "same", false, false, false, false, nil)
	must(t, err)
	assertAlive(t, c)
}

func TestAckUnknownDeliveryTag(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	cases := map[string]func(ch *amqp.Channel) error{
		"ack":          func(ch *amqp.Channel) error { return ch.Ack(42, false) },
		"ack-multiple": func(ch *amqp.Channel) error { return ch.Ack(42, true) },
		"nack":         func(ch *amqp.Channel) error { return ch.Nack(42, false, true) },
		"reject":       func(ch *amqp.Channel) error { return ch.Reject(42, false) },
	}
	for name, f := range cases {
		ch := mustChannel(t, c)
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		must(t, f(ch)) // asynchronous: the error comes as channel.close
		e := waitClose(t, closed)
		if e.Code != amqp.PreconditionFailed || !strings.Contains(e.Reason, "unknown delivery tag 42") {
			t.Errorf("%s: close %d %q", name, e.Code, e.Reason)
		}
	}
	// Acking the same delivery twice.
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	d, ok, err := ch.Get(q, false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	must(t, d.Ack(false))
	must(t, d.Ack(false))
	e := waitClose(t, closed)
	if e.Code != amqp.PreconditionFailed || !strings.Contains(e.Reason, fmt.Sprint("unknown delivery tag ", d.DeliveryTag)) {
		t.Fatalf("double ack: close %d %q", e.Code, e.Reason)
	}
	assertAlive(t, c)
}

// TestAckOfAutoAckDelivery: deliveries of a no-ack consumer have no
// delivery tag to ack; acking one is 406 as well.
func TestAckOfAutoAckDelivery(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	d := recv(t, mustConsume(t, ch, q, "", true))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	must(t, ch.Ack(d.DeliveryTag, false))
	if e := waitClose(t, closed); e.Code != amqp.PreconditionFailed {
		t.Fatalf("close %d %q", e.Code, e.Reason)
	}
}

// TestQosPrefetchSize: prefetch_size is not implemented (as in RabbitMQ):
// 540 NOT_IMPLEMENTED closes the connection.
func TestQosPrefetchSize(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	ch := mustChannel(t, c)
	expectCode(t, ch.Qos(1, 1000, false), amqp.NotImplemented)
	if e := waitClose(t, closed); e.Code != amqp.NotImplemented {
		t.Fatalf("close %d", e.Code)
	}
}
