package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp "github.com/rabbitmq/amqp091-go"
)

// streamSys is the stream under test: an AMQP 0-9-1 queue of type stream
// or a JetStream stream. The scenarios in stream.go drive either through
// it, each with its own client library.
type streamSys interface {
	newPublisher(id int) (streamPub, error)
	// consume delivers the stream's messages to each, from the first one
	// (first) or from the next one published, until each returns false or
	// stop is closed.
	consume(id int, first bool, stop <-chan struct{}, each func(body []byte) bool) error
	// close deletes the stream and closes every connection.
	close()
}

// streamPub publishes with confirms: wait blocks until the broker has
// confirmed (nil) or refused the publish.
type streamPub interface {
	publish(body []byte) (wait func() error, err error)
}

var errNacked = errors.New("the broker nacked the publish")

// amqpStream is a durable queue declared with x-queue-type: stream.
type amqpStream struct {
	r     *run
	admin *conn
	queue string
}

func newAMQPStream(r *run) (*amqpStream, error) {
	admin, err := r.dial("admin")
	if err != nil {
		return nil, err
	}
	s := &amqpStream{r: r, admin: admin, queue: r.name("stream")}
	err = adminCall(admin, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(s.queue, true, false, false, false, amqp.Table{"x-queue-type": "stream"})
		return err
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("the broker refused to declare a stream (x-queue-type: stream): %w", err)
	}
	return s, nil
}

func (s *amqpStream) close() { s.r.teardown(s.admin, []string{s.queue}, "") }

type amqpStreamPub struct {
	r     *run
	cn    *conn
	queue string
}

func (s *amqpStream) newPublisher(id int) (streamPub, error) {
	cn, err := s.r.dialWith(fmt.Sprintf("producer %d", id), true)
	if err != nil {
		return nil, err
	}
	if err := cn.ch.Confirm(false); err != nil {
		return nil, brokerError(cn.name, "confirm.select", err)
	}
	return &amqpStreamPub{r: s.r, cn: cn, queue: s.queue}, nil
}

func (p *amqpStreamPub) publish(body []byte) (func() error, error) {
	dc, err := p.cn.ch.PublishWithDeferredConfirmWithContext(context.Background(), "", p.queue, false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
	if err != nil {
		return nil, fmt.Errorf("%s: publish: %w", p.cn.name, p.cn.reason(err))
	}
	return func() error {
		if !dc.Wait() {
			return errNacked
		}
		return nil
	}, nil
}

func (s *amqpStream) consume(id int, first bool, stop <-chan struct{}, each func([]byte) bool) error {
	r := s.r
	cn, err := r.dialWith(fmt.Sprintf("consumer %d", id), true)
	if err != nil {
		return err
	}
	if err := cn.ch.Qos(r.cfg.Prefetch, 0, false); err != nil {
		return brokerError(cn.name, "basic.qos", err)
	}
	offset := "next"
	if first {
		offset = "first"
	}
	ds, err := cn.ch.Consume(s.queue, fmt.Sprintf("%sc%d", namePrefix, id), false, false, false, false,
		amqp.Table{"x-stream-offset": offset})
	if err != nil {
		return brokerError(cn.name, "consuming the stream from "+offset, err)
	}
	every := uint64(r.cfg.AckEvery)
	var n uint64
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				return fmt.Errorf("%s: deliveries stopped: %v", cn.name, cn.reason(nil))
			}
			more := each(d.Body)
			if n++; n%every == 0 || !more {
				if err := d.Ack(every > 1); err != nil {
					return fmt.Errorf("%s: ack: %w", cn.name, cn.reason(err))
				}
			}
			if !more {
				return nil
			}
		case <-stop:
			return nil
		}
	}
}

// jsStream is a JetStream stream with file storage whose one subject is its
// name.
type jsStream struct {
	r     *run
	name  string
	nc    *nats.Conn
	js    jetstream.JetStream
	conns []*nats.Conn // owned by the controller: appended before workers start
}

func newJSStream(r *run) (*jsStream, error) {
	nc, err := dialNATS(r.cfg.URL, "admin")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s := &jsStream{r: r, name: strings.TrimSuffix(r.name("stream"), "-"), nc: nc, js: js}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: s.name, Subjects: []string{s.name}, Storage: jetstream.FileStorage,
	}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("creating the JetStream stream (is the server started with -js?): %w", err)
	}
	return s, nil
}

func (s *jsStream) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.js.DeleteStream(ctx, s.name)
	for _, nc := range s.conns {
		nc.Close()
	}
	s.nc.Close()
}

func (s *jsStream) dial(name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := dialNATS(s.r.cfg.URL, name)
	if err != nil {
		return nil, nil, err
	}
	s.conns = append(s.conns, nc)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(s.r.cfg.ConfirmWindow+1))
	return nc, js, err
}

type jsStreamPub struct {
	js      jetstream.JetStream
	subject string
}

func (s *jsStream) newPublisher(id int) (streamPub, error) {
	_, js, err := s.dial(fmt.Sprintf("producer %d", id))
	if err != nil {
		return nil, err
	}
	return &jsStreamPub{js: js, subject: s.name}, nil
}

func (p *jsStreamPub) publish(body []byte) (func() error, error) {
	// The client keeps the message to resend it: give it its own copy.
	f, err := p.js.PublishAsync(p.subject, append([]byte(nil), body...))
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	return func() error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		}
	}, nil
}

func (s *jsStream) consume(id int, first bool, stop <-chan struct{}, each func([]byte) bool) error {
	_, js, err := s.dial(fmt.Sprintf("consumer %d", id))
	if err != nil {
		return err
	}
	policy := jetstream.DeliverNewPolicy
	if first {
		policy = jetstream.DeliverAllPolicy
	}
	ctx, cancel := context.WithTimeout(s.r.ctx, 10*time.Second)
	c, err := js.OrderedConsumer(ctx, s.name, jetstream.OrderedConsumerConfig{DeliverPolicy: policy})
	cancel()
	if err != nil {
		return fmt.Errorf("consumer %d: ordered consumer: %w", id, err)
	}
	it, err := c.Messages(jetstream.PullMaxMessages(s.r.cfg.Prefetch))
	if err != nil {
		return fmt.Errorf("consumer %d: %w", id, err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // Next blocks: stop ends it
		select {
		case <-stop:
			it.Stop()
		case <-done:
		}
	}()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			select {
			case <-stop:
				return nil
			default:
			}
			return fmt.Errorf("consumer %d: %w", id, err)
		}
		if !each(m.Data()) {
			return nil
		}
	}
}
