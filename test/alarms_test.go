package test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// TestDiskAlarmBlocksPublishers: with the free-disk limit above the free
// space, publishing connections get connection.blocked and stop being
// read, consumers keep draining; lowering the limit unblocks them.
func TestDiskAlarmBlocksPublishers(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.AlarmCheckInterval = 20 * time.Millisecond })
	consumerConn := s.dial(t)
	cch := mustChannel(t, consumerConn)
	q := tempQueue(t, cch)
	mustPublish(t, cch, "", q, amqp.Publishing{Body: []byte("before")})
	deliveries := mustConsume(t, cch, q, "", true)
	if d := recv(t, deliveries); string(d.Body) != "before" {
		t.Fatalf("got %q", d.Body)
	}

	pubConn := s.dial(t)
	blocked := pubConn.NotifyBlocked(make(chan amqp.Blocking, 4))
	pch := mustChannel(t, pubConn)
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := pch.NotifyPublish(make(chan amqp.Confirmation, 4))

	s.SetDiskFreeLimit(1 << 62) // more free space than any disk has
	eventually(t, "the disk alarm", func() bool { return len(s.Alarms()) == 1 && s.Alarms()[0] == "disk" })
	mustPublish(t, pch, "", q, amqp.Publishing{Body: []byte("held")})
	select {
	case b := <-blocked:
		if !b.Active || b.Reason == "" {
			t.Fatalf("blocking notice %+v", b)
		}
	case <-timeAfterWait():
		t.Fatal("no connection.blocked")
	}
	// The first publish went through (RabbitMQ also blocks after it);
	// the next one is not read while the alarm lasts.
	recv(t, deliveries)
	<-confirms
	mustPublish(t, pch, "", q, amqp.Publishing{Body: []byte("waits")})
	expectNoDelivery(t, deliveries)

	s.SetDiskFreeLimit(0)
	select {
	case b := <-blocked:
		if b.Active {
			t.Fatalf("expected unblocked, got %+v", b)
		}
	case <-timeAfterWait():
		t.Fatal("no connection.unblocked")
	}
	if d := recv(t, deliveries); string(d.Body) != "waits" {
		t.Fatalf("after the alarm got %q", d.Body)
	}
}

// TestBlockedPublisherOutlivesHeartbeats: a flooding publisher the broker
// stops reading (here a resource alarm) for longer than the heartbeat
// timeout is not closed for missed heartbeats, which wait unread in its
// socket behind its own publishes; once the alarm clears it goes on.
func TestBlockedPublisherOutlivesHeartbeats(t *testing.T) {
	t.Parallel()
	const heartbeat = time.Second // the broker's read deadline: 2.5 s
	s := startServer(t, withHeartbeat(heartbeat), func(c *app.Config) { c.AlarmCheckInterval = 20 * time.Millisecond })
	cch := mustChannel(t, s.dial(t))
	q := tempQueue(t, cch)
	deliveries := mustConsume(t, cch, q, "", true)

	pubConn := s.dial(t)
	closed := pubConn.NotifyClose(make(chan *amqp.Error, 1))
	pch := mustChannel(t, pubConn)
	s.SetDiskFreeLimit(1 << 62)
	eventually(t, "the disk alarm", func() bool { return len(s.Alarms()) == 1 })
	// A flood: the broker reads part of it, then stops in the middle of
	// a frame; the rest waits in the socket.
	const n = 200
	body := make([]byte, 8<<10)
	published := make(chan error, 1)
	go func() {
		for range n {
			if err := pch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: body}); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	// Held for twice the broker's heartbeat timeout.
	time.Sleep(5 * heartbeat)
	s.SetDiskFreeLimit(0)
	for i := range n {
		select {
		case <-deliveries:
		case err := <-closed:
			t.Fatalf("the blocked publisher's connection was closed after %d deliveries: %v", i, err)
		case <-timeAfterWait():
			t.Fatalf("%d of %d delivered", i, n)
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}
