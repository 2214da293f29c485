package test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/auth"
)

// waitTimeout bounds every wait for something the server should do "now".
const waitTimeout = 5 * time.Second

// quietPeriod is how long a test watches for something that must NOT
// happen (an extra delivery past the prefetch window, a return for a
// routable message). It cannot be replaced by a condition: absence is
// only observable over time.
const quietPeriod = 200 * time.Millisecond

func withHeartbeat(d time.Duration) serverOption {
	return func(c *app.Config) { c.AMQP.Heartbeat = d }
}

func withMaxMessageSize(n uint64) serverOption {
	return func(c *app.Config) { c.AMQP.MaxMessageSize = n }
}

func withUsers(u *auth.Users) serverOption {
	return func(c *app.Config) { c.Users = u }
}

// dialConfig dials the server with an explicit client configuration.
func (s *testServer) dialConfig(t testing.TB, cfg amqp.Config) *amqp.Connection {
	t.Helper()
	c, err := amqp.DialConfig(s.URL, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", s.URL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// tempQueue declares a server-named, exclusive, auto-delete queue.
func tempQueue(t testing.TB, ch *amqp.Channel) string {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatalf("queue.declare: %v", err)
	}
	return q.Name
}

func mustPublish(t testing.TB, ch *amqp.Channel, exchange, key string, msg amqp.Publishing) {
	t.Helper()
	if err := ch.Publish(exchange, key, false, false, msg); err != nil {
		t.Fatalf("publish to %q/%q: %v", exchange, key, err)
	}
}

func mustConsume(t testing.TB, ch *amqp.Channel, queue, tag string, autoAck bool) <-chan amqp.Delivery {
	t.Helper()
	d, err := ch.Consume(queue, tag, autoAck, false, false, false, nil)
	if err != nil {
		t.Fatalf("basic.consume %q: %v", queue, err)
	}
	return d
}

// recv waits for the next delivery.
func recv(t testing.TB, ds <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case d, ok := <-ds:
		if !ok {
			t.Fatal("delivery channel closed")
		}
		return d
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for a delivery")
	}
	panic("unreachable")
}

// recvN waits for n deliveries.
func recvN(t testing.TB, ds <-chan amqp.Delivery, n int) []amqp.Delivery {
	t.Helper()
	out := make([]amqp.Delivery, 0, n)
	deadline := time.After(waitTimeout)
	for len(out) < n {
		select {
		case d, ok := <-ds:
			if !ok {
				t.Fatalf("delivery channel closed after %d of %d", len(out), n)
			}
			out = append(out, d)
		case <-deadline:
			t.Fatalf("timed out after %d of %d deliveries", len(out), n)
		}
	}
	return out
}

// expectNoDelivery asserts nothing arrives during quietPeriod.
func expectNoDelivery(t testing.TB, ds <-chan amqp.Delivery) {
	t.Helper()
	select {
	case d := <-ds:
		t.Fatalf("unexpected delivery %q (tag %d)", d.Body, d.DeliveryTag)
	case <-time.After(quietPeriod):
	}
}

// waitClose waits for an *amqp.Error on a NotifyClose channel.
func waitClose(t testing.TB, c <-chan *amqp.Error) *amqp.Error {
	t.Helper()
	select {
	case e, ok := <-c:
		if !ok || e == nil {
			t.Fatal("closed without an error")
		}
		return e
	case <-time.After(waitTimeout):
		t.Fatal("timed out waiting for close")
	}
	panic("unreachable")
}

// amqpCode extracts the reply code of an *amqp.Error (0 if none).
func amqpCode(err error) int {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

// expectCode asserts err is an *amqp.Error with code, and returns it.
func expectCode(t testing.TB, err error, code int) *amqp.Error {
	t.Helper()
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		t.Fatalf("expected an *amqp.Error with code %d, got %T %v", code, err, err)
	}
	if ae.Code != code {
		t.Fatalf("expected code %d, got %d (%s)", code, ae.Code, ae.Reason)
	}
	return ae
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, waitTimeout, what, cond)
}

// eventuallyWithin is eventually with its own deadline.
func eventuallyWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queueExists checks with a passive declare on a throwaway channel (a
// missing queue closes that channel with 404).
func queueExists(t testing.TB, c *amqp.Connection, name string) bool {
	t.Helper()
	ch := mustChannel(t, c)
	_, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	if err == nil {
		_ = ch.Close()
		return true
	}
	switch amqpCode(err) {
	case amqp.NotFound:
		return false
	case amqp.ResourceLocked:
		// Another connection's exclusive queue: it exists (its owner may
		// be closing and the queue not yet gone).
		return true
	}
	t.Fatalf("passive declare %q: %v", name, err)
	return false
}

// exchangeExists checks with a passive declare on a throwaway channel.
func exchangeExists(t testing.TB, c *amqp.Connection, name, kind string) bool {
	t.Helper()
	ch := mustChannel(t, c)
	err := ch.ExchangeDeclarePassive(name, kind, false, false, false, false, nil)
	if err == nil {
		_ = ch.Close()
		return true
	}
	if amqpCode(err) != amqp.NotFound {
		t.Fatalf("passive exchange declare %q: %v", name, err)
	}
	return false
}

// queueDepth returns the ready count via a passive declare.
func queueDepth(t testing.TB, ch *amqp.Channel, name string) int {
	t.Helper()
	q, err := ch.QueueDeclarePassive(name, false, false, false, false, nil)
	if err != nil {
		t.Fatalf("passive declare %q: %v", name, err)
	}
	return q.Messages
}

// assertAlive proves a connection still works by a round trip on a new channel.
func assertAlive(t testing.TB, c *amqp.Connection) {
	t.Helper()
	if c.IsClosed() {
		t.Fatal("connection is closed")
	}
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("ping")})
	d := recv(t, mustConsume(t, ch, q, "", true))
	if string(d.Body) != "ping" {
		t.Fatalf("round trip got %q", d.Body)
	}
	_ = ch.Close()
}

func timeAfterWait() <-chan time.Time { return time.After(waitTimeout) }

// dialWS opens /ws as guest; the socket is closed when the test ends.
func (s *testServer) dialWS(ctx context.Context, t testing.TB) *websocket.Conn {
	t.Helper()
	auth := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("guest:guest"))}}
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/ws", s.HTTPAddr()), &websocket.DialOptions{HTTPHeader: auth})
	must(t, err)
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}
