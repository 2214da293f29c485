package stomp

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

type ackMode uint8

const (
	ackAuto             ackMode = iota // settled when written (a no-ack consumer)
	ackClient                          // ACK/NACK is cumulative
	ackClientIndividual                // ACK/NACK settles one message
)

// subscription is one SUBSCRIBE: a consumer on a queue, and the broker.Sink
// that feeds the connection's outbox.
type subscription struct {
	c     *conn
	id    string
	ack   ackMode
	queue *broker.Queue
	bc    *broker.Consumer // set once Consume returns; read by the writer after that
	// durable marks a durable topic subscription's queue, which
	// UNSUBSCRIBE with persistent/durable:true deletes.
	durable bool
	// args are the consume arguments (a stream's x-stream-* headers).
	args broker.Table

	// Guarded by c.out.mu.
	unacked []uint64 // delivery tags in delivery order (client modes)
	blocked bool     // in the outbox's blocked list
}

// Deliver runs under the queue's lock: it only records the delivery and
// queues it for the writer.
func (s *subscription) Deliver(d broker.Delivery) bool {
	o := s.c.out
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if o.fullLocked() {
		if !s.blocked {
			s.blocked = true
			o.blocked = append(o.blocked, s)
		}
		o.mu.Unlock()
		return false
	}
	o.nextTag++
	tag := o.nextTag
	if s.ack != ackAuto {
		o.pending[tag] = pendingAck{sub: s, queue: d.Queue, id: d.ID}
		s.unacked = append(s.unacked, tag)
	}
	o.items = append(o.items, outItem{sub: s, d: d, tag: tag})
	o.bytes += len(d.Message.Body)
	o.mu.Unlock()
	o.wake.Ring()
	s.c.reg.CountDeliver(1)
	return true
}

// Cancelled is the queue telling us it went away (deleted elsewhere).
// STOMP has no frame for this short of ERROR, so the subscription just
// stops receiving; RabbitMQ does the same for a deleted queue.
func (s *subscription) Cancelled(*broker.Consumer) {
	s.c.log.Debug("stomp subscription's queue deleted", "subscription", s.id, "queue", s.queue.Name())
}

func parseAckMode(f *frame.Frame) (ackMode, error) {
	switch v := f.Value("ack"); v {
	case "", "auto":
		return ackAuto, nil
	case "client":
		return ackClient, nil
	case "client-individual":
		return ackClientIndividual, nil
	default:
		return 0, errorf("Invalid header", "ack must be auto, client or client-individual, got '%s'", v)
	}
}

func (c *conn) subscribe(f *frame.Frame) error {
	ds, err := require(f, "destination")
	if err != nil {
		return err
	}
	id, hasID := f.Get("id")
	if !hasID || id == "" {
		if c.version >= frame.V11 {
			return errorf("Missing header", "SUBSCRIBE needs an 'id' header")
		}
		id = ds // STOMP 1.0: the destination names the subscription
	}
	if _, dup := c.subs[id]; dup {
		return errorf("Duplicated subscription identifier", "A subscription with id '%s' already exists", id)
	}
	if len(c.subs) >= maxSubscriptions {
		return errorf("Too many subscriptions", "At most %d subscriptions per connection", maxSubscriptions)
	}
	mode, err := parseAckMode(f)
	if err != nil {
		return err
	}
	prefetch := 0
	if p, ok := f.Get("prefetch-count"); ok {
		n, err := strconv.ParseUint(p, 10, 31)
		if err != nil {
			return errorf("Invalid header", "prefetch-count must be a non-negative integer, got '%s'", p)
		}
		prefetch = int(n)
	}
	d, err := parseDestination(ds)
	if err != nil {
		return err
	}
	s := &subscription{c: c, id: id, ack: mode}
	var q *broker.Queue
	switch d.kind {
	case destQueue:
		q, err = c.ensureQueue(d.name, f)
	case destAMQQueue, destReplyQueue:
		q, err = c.vhost.UsableQueue(d.name, c.owner)
	case destTempQueue:
		q, err = c.tempQueue(d.name, false)
	case destTopic, destExchange:
		q, err = c.subscriptionQueue(d, f, hasID, s)
	}
	if err != nil {
		return err
	}
	if err := c.allow(auth.Read, auth.Queue, q.Name()); err != nil {
		return err
	}
	s.queue = q
	if q.Type() == broker.QueueTypeStream {
		if s.args, err = broker.StreamArgsFromSTOMP(f.Get); err != nil {
			return coreError(err)
		}
	}
	return c.start(s, prefetch)
}

// start attaches s to its queue and registers it.
func (c *conn) start(s *subscription, prefetch int) error {
	bc, err := s.queue.Consume(broker.ConsumerOptions{
		Tag:      "T_" + s.id,
		NoAck:    s.ack == ackAuto,
		Prefetch: prefetch,
		Owner:    c.owner,
		Args:     s.args,
		Sink:     s,
	})
	if err != nil {
		return err
	}
	c.out.mu.Lock()
	s.bc = bc // under the lock: the writer reads it to resume the consumer
	blocked := s.blocked
	c.out.mu.Unlock()
	if blocked {
		bc.Resume() // refused while Consume ran, before the writer could see bc
	}
	c.subs[s.id] = s
	return nil
}

// subscriptionQueue creates the queue a /topic/ or /exchange/ subscription
// reads from, bound to the exchange with the destination's key: a private
// exclusive auto-delete queue, or with durable:true (persistent:true) and
// an id a durable shared one that keeps messages while nobody is
// connected, as RabbitMQ's plugin does.
func (c *conn) subscriptionQueue(d destination, f *frame.Frame, hasID bool, s *subscription) (q *broker.Queue, err error) {
	if _, err := c.vhost.Exchange(d.name); err != nil {
		return nil, err
	}
	// Topic authorisation first, as RabbitMQ's plugin: a refused key
	// leaves no queue behind.
	if err := c.allowTopic(auth.Read, d.name, d.key); err != nil {
		return nil, err
	}
	durable := headerBool(f, "durable", false) || headerBool(f, "persistent", false)
	name := f.Value("x-queue-name")
	var opts broker.QueueOptions
	if durable {
		if !hasID {
			return nil, errorf("Missing header", "A durable subscription needs an 'id' header")
		}
		if name == "" {
			// Stable across connections, so reconnecting with the same
			// destination and id finds the messages kept meanwhile.
			sum := sha256.Sum256([]byte(f.Value("destination") + "\x00" + s.id))
			name = "stomp-subscription-" + base64.RawURLEncoding.EncodeToString(sum[:16])
		}
		opts = broker.QueueOptions{Durable: true, AutoDelete: headerBool(f, "auto-delete", false), Owner: c.owner}
		s.durable = true
	} else {
		opts = broker.QueueOptions{Exclusive: true, AutoDelete: headerBool(f, "auto-delete", true), Owner: c.owner}
	}
	if opts.Args, err = queueArgs(f); err != nil {
		return nil, err
	}
	if name != "" {
		if err := c.allow(auth.Configure, auth.Queue, name); err != nil {
			return nil, err
		}
	}
	q, err = c.vhost.DeclareQueue(name, opts)
	if err != nil {
		return nil, err
	}
	if name == "" {
		if err := c.allowDeclared(q.Name()); err != nil {
			return nil, err
		}
	}
	if err := c.allow(auth.Write, auth.Queue, q.Name()); err != nil {
		return nil, err
	}
	if err := c.allow(auth.Read, auth.Exchange, d.name); err != nil {
		return nil, err
	}
	if err := c.vhost.BindQueue(q.Name(), d.name, d.key, nil, c.owner); err != nil {
		return nil, err
	}
	return q, nil
}

// tempQueue returns the session's private queue for /temp-queue/ name,
// creating it on first use. implicit also subscribes to it (auto ack, id
// "/temp-queue/name"), as RabbitMQ does when a SEND names it in reply-to,
// unless the client subscribed to it itself.
func (c *conn) tempQueue(name string, implicit bool) (*broker.Queue, error) {
	q, ok := c.temp[name]
	if !ok {
		var err error
		q, err = c.vhost.DeclareQueue("", broker.QueueOptions{Exclusive: true, Owner: c.owner})
		if err != nil {
			return nil, err
		}
		if err := c.allowDeclared(q.Name()); err != nil {
			return nil, err
		}
		c.temp[name] = q
	}
	if !implicit {
		return q, nil
	}
	for _, s := range c.subs {
		if s.queue == q {
			return q, nil
		}
	}
	id := "/temp-queue/" + name
	if _, dup := c.subs[id]; dup {
		return nil, errorf("Duplicated subscription identifier", "A subscription with id '%s' already exists", id)
	}
	return q, c.start(&subscription{c: c, id: id, ack: ackAuto, queue: q}, 0)
}

func (c *conn) unsubscribe(f *frame.Frame) error {
	id, ok := f.Get("id")
	if !ok && c.version == frame.V10 {
		id, ok = f.Get("destination")
	}
	if !ok || id == "" {
		return errorf("Missing header", "UNSUBSCRIBE needs an 'id' header")
	}
	s, ok := c.subs[id]
	if !ok {
		return errorf("Bad subscription", "There is no subscription with id '%s'", id)
	}
	delete(c.subs, id)
	// Unacknowledged deliveries stay ackable until the connection closes,
	// as after AMQP's basic.cancel.
	s.bc.Cancel()
	if s.durable && (headerBool(f, "durable", false) || headerBool(f, "persistent", false)) {
		// Ending a durable subscription deletes its queue (RabbitMQ).
		if _, err := c.vhost.DeleteQueue(s.queue.Name(), c.owner, false, false); err != nil && !errors.Is(err, broker.ErrNotFound) {
			return err
		}
	}
	return nil
}

// settle handles ACK (ack=true) and NACK: 1.2 names the delivery by the
// MESSAGE's ack header in id, 1.0/1.1 by message-id. In client mode the
// acknowledgement is cumulative over the subscription.
func (c *conn) settle(f *frame.Frame, ack bool) error {
	key := "id"
	if c.version < frame.V12 {
		key = "message-id"
	}
	id, err := require(f, key)
	if err != nil {
		return err
	}
	tag, ok := parseTag(id)
	if !ok {
		return errorf("Invalid message-id", "'%s' is not a message id this server issued", id)
	}
	o := c.out
	var settled []pendingAck
	o.mu.Lock()
	p, ok := o.pending[tag]
	if ok {
		s := p.sub
		i := 0
		for i < len(s.unacked) && s.unacked[i] != tag {
			i++
		}
		if i == len(s.unacked) {
			o.mu.Unlock()
			return errorf("Internal error", "delivery %d is not tracked by its subscription", tag)
		}
		lo := i
		if s.ack == ackClient {
			lo = 0
		}
		for _, t := range s.unacked[lo : i+1] {
			settled = append(settled, o.pending[t])
			delete(o.pending, t)
		}
		s.unacked = append(s.unacked[:lo], s.unacked[i+1:]...)
	}
	o.mu.Unlock()
	// Unknown ids (already settled, e.g. by a cumulative ACK) are ignored,
	// as RabbitMQ does. The queue calls run outside the outbox lock,
	// because queue dispatch takes it under the queue's lock.
	requeue := f.Value("requeue") != "false"
	for len(settled) > 0 {
		q := settled[0].queue
		ids := make([]uint64, 0, len(settled))
		rest := settled[:0]
		for _, p := range settled {
			if p.queue == q {
				ids = append(ids, p.id)
			} else {
				rest = append(rest, p)
			}
		}
		settled = rest
		switch {
		case ack:
			q.Ack(ids...)
			c.reg.CountAck(len(ids))
		case requeue:
			q.Requeue(ids...)
		default:
			q.Discard(ids...)
		}
	}
	return nil
}

// teardown releases what the connection holds in the broker: consumers
// are cancelled and unacknowledged deliveries requeued. serve then
// releases the owner, which deletes the exclusive (private) queues.
func (c *conn) teardown() {
	o := c.out
	o.mu.Lock()
	o.closed = true
	pending := o.pending
	o.pending = map[uint64]pendingAck{}
	o.mu.Unlock()
	for _, s := range c.subs {
		s.bc.Cancel()
	}
	byQueue := make(map[*broker.Queue][]uint64)
	for _, p := range pending {
		byQueue[p.queue] = append(byQueue[p.queue], p.id)
	}
	for q, ids := range byQueue {
		q.Requeue(ids...) // the queue restores their original order
	}
	c.subs = nil
	c.txs = nil
}
