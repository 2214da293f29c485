package test

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestSmokePublishConsume(t *testing.T) {
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ch.PublishWithContext(ctx, "", q.Name, false, false, amqp.Publishing{Body: []byte("hello"), Headers: amqp.Table{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case cf := <-confirms:
		if !cf.Ack {
			t.Fatal("nacked")
		}
	case <-ctx.Done():
		t.Fatal("no confirm")
	}
	msgs, err := ch.Consume(q.Name, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if string(m.Body) != "hello" || m.Headers["k"] != "v" {
			t.Fatalf("got %q %v", m.Body, m.Headers)
		}
		if err := m.Ack(false); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
}
