package amqp091

import (
	"sort"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// consumerSink is the broker.Sink of one basic.consume.
type consumerSink struct {
	ch    *channel
	tag   string
	noAck bool
	bc    *broker.Consumer
	// started opens the gate after consume-ok is queued, so no delivery
	// can overtake it.
	started atomic.Bool
	blocked bool // in the outbox's blocked list; guarded by the outbox lock
}

// Deliver runs under the queue's lock: it only assigns a delivery tag and
// queues the delivery for the writer.
func (s *consumerSink) Deliver(d broker.Delivery) bool {
	if !s.started.Load() {
		return false
	}
	ch := s.ch
	o := ch.c.out
	o.mu.Lock()
	if ch.flowPaused || o.closed {
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
	ch.nextTag++
	if !s.noAck {
		ch.unacked = append(ch.unacked, unackedRec{tag: ch.nextTag, queue: d.Queue, id: d.ID})
	}
	o.items = append(o.items, outItem{kind: itemDeliver, channel: ch.id, flag: d.Redelivered, tag: ch.nextTag, consumer: s.tag, msg: d.Message, deliveries: d.DeliveryCount})
	o.bytes += len(d.Message.Body)
	o.mu.Unlock()
	o.wake.Ring()
	ch.c.reg.CountDeliver(1)
	return true
}

// DeliveryTimedOut is the queue telling us a delivery was not acknowledged
// within its consumer timeout; the delivery is already back in the queue.
// Like RabbitMQ, close the channel with 406. The read loop finishes the
// close (releasing the channel) when it next sees this channel.
func (s *consumerSink) DeliveryTimedOut(_ *broker.Consumer, timeout time.Duration) {
	ch := s.ch
	if ch.timedOut.Swap(true) {
		return
	}
	e := channelError(frame.PreconditionFailed, nil, "delivery acknowledgement on channel %d timed out. Timeout value used: %d ms. This timeout value can be configured, see consumers doc guide to learn more", ch.id, timeout.Milliseconds())
	ch.c.log.Info("amqp consumer timed out", "channel", ch.id, "consumer", s.tag, "timeout", timeout)
	ch.send(&frame.ChannelClose{ReplyCode: e.code, ReplyText: replyText(e.code, e.text)})
}

// Cancelled is the queue telling us it went away: tell the client, if it
// understands basic.cancel from the server.
func (s *consumerSink) Cancelled(*broker.Consumer) {
	ch := s.ch
	ch.mu.Lock()
	if ch.consumers[s.tag] == s {
		delete(ch.consumers, s.tag)
	}
	ch.mu.Unlock()
	if ch.c.caps.consumerCancelNotify {
		ch.send(&frame.BasicCancel{ConsumerTag: s.tag, NoWait: true})
	}
}

func (ch *channel) basicConsume(m *frame.BasicConsume) error {
	tag := m.ConsumerTag
	if tag == "" {
		tag = generateTag("amq.ctag-")
	}
	ch.mu.Lock()
	_, dup := ch.consumers[tag]
	ch.mu.Unlock()
	if dup {
		return connectionError(frame.NotAllowed, m, "attempt to reuse consumer tag '%s'", tag)
	}
	var q *broker.Queue
	if m.Queue == broker.DirectReplyTo {
		if !m.NoAck {
			return channelError(frame.PreconditionFailed, m, "reply consumer cannot acknowledge")
		}
		if ch.replyQueue != nil {
			return channelError(frame.PreconditionFailed, m, "reply consumer already set")
		}
		q = ch.c.vhost.DeclareReplyQueue(ch.c.owner)
		ch.replyQueue, ch.replyConsumer = q, tag
	} else {
		name, err := ch.queueName(m.Queue, m)
		if err != nil {
			return err
		}
		if err := ch.allow(m, auth.Read, auth.Queue, name); err != nil {
			return err
		}
		if q, err = ch.c.vhost.UsableQueue(name, ch.c.owner); err != nil {
			return fromBroker(err, m)
		}
	}
	s := &consumerSink{ch: ch, tag: tag, noAck: m.NoAck}
	opts := broker.ConsumerOptions{
		Tag: tag, NoAck: m.NoAck, Exclusive: m.Exclusive, Prefetch: ch.prefetch,
		Owner: ch.c.owner, Args: m.Arguments, Sink: s,
	}
	if ch.limiter != nil {
		opts.Limiter = ch.limiter
	}
	bc, err := q.Consume(opts)
	if err != nil {
		return fromBroker(err, m)
	}
	s.bc = bc
	ch.mu.Lock()
	ch.consumers[tag] = s
	ch.mu.Unlock()
	if !m.NoWait {
		ch.send(&frame.BasicConsumeOk{ConsumerTag: tag})
	}
	s.started.Store(true)
	bc.Resume()
	return nil
}

func (ch *channel) basicCancel(m *frame.BasicCancel) error {
	ch.mu.Lock()
	s := ch.consumers[m.ConsumerTag]
	delete(ch.consumers, m.ConsumerTag)
	ch.mu.Unlock()
	if s != nil {
		s.bc.Cancel()
		if m.ConsumerTag == ch.replyConsumer {
			ch.replyQueue, ch.replyConsumer = nil, ""
		}
	}
	if !m.NoWait {
		ch.send(&frame.BasicCancelOk{ConsumerTag: m.ConsumerTag})
	}
	return nil
}

func (ch *channel) basicGet(m *frame.BasicGet) error {
	name, err := ch.queueName(m.Queue, m)
	if err != nil {
		return err
	}
	if err := ch.allow(m, auth.Read, auth.Queue, name); err != nil {
		return err
	}
	q, err := ch.c.vhost.UsableQueue(name, ch.c.owner)
	if err != nil {
		return fromBroker(err, m)
	}
	d, ok, err := q.Get(ch.c.owner, m.NoAck)
	if err != nil {
		return fromBroker(err, m)
	}
	if !ok {
		ch.send(&frame.BasicGetEmpty{})
		return nil
	}
	o := ch.c.out
	o.mu.Lock()
	ch.nextTag++
	if !m.NoAck {
		ch.unacked = append(ch.unacked, unackedRec{tag: ch.nextTag, queue: q, id: d.ID})
	}
	o.items = append(o.items, outItem{kind: itemGetOk, channel: ch.id, flag: d.Redelivered, tag: ch.nextTag, count: uint32(d.Remaining), msg: d.Message, deliveries: d.DeliveryCount})
	o.bytes += len(d.Message.Body)
	o.mu.Unlock()
	o.wake.Ring()
	ch.c.reg.CountDeliver(1)
	return nil
}

// settle handles basic.ack, basic.nack and basic.reject.
func (ch *channel) settle(m frame.Method, tag uint64, multiple bool, op settleOp) error {
	if ch.tx {
		ch.txSettles = append(ch.txSettles, txSettle{tag: tag, multiple: multiple, op: op})
		return nil
	}
	return ch.applySettle(m, tag, multiple, op)
}

func (ch *channel) applySettle(m frame.Method, tag uint64, multiple bool, op settleOp) error {
	groups := ch.settleScratch[:0]
	o := ch.c.out
	o.mu.Lock()
	recs := ch.unacked
	if multiple {
		for i := range recs {
			r := &recs[i]
			if tag != 0 && r.tag > tag {
				break
			}
			if !r.settled {
				r.settled = true
				groups = addToGroup(groups, r.queue, r.id)
			}
		}
	} else {
		i := sort.Search(len(recs), func(i int) bool { return recs[i].tag >= tag })
		if i == len(recs) || recs[i].tag != tag || recs[i].settled {
			o.mu.Unlock()
			return channelError(frame.PreconditionFailed, m, "unknown delivery tag %d", tag)
		}
		recs[i].settled = true
		groups = addToGroup(groups, recs[i].queue, recs[i].id)
	}
	// Trim settled records from the front; the slice only ever grows at the back.
	n := 0
	for n < len(recs) && recs[n].settled {
		recs[n] = unackedRec{}
		n++
	}
	ch.unacked = recs[n:]
	if len(ch.unacked) == 0 {
		ch.unacked = recs[:0]
	}
	o.mu.Unlock()
	if multiple && tag != 0 && len(groups) == 0 {
		return channelError(frame.PreconditionFailed, m, "unknown delivery tag %d", tag)
	}
	for i := range groups {
		g := &groups[i]
		switch op {
		case opAck:
			g.q.Ack(g.ids...)
			ch.c.reg.CountAck(len(g.ids))
		case opRequeue:
			g.q.Requeue(g.ids...)
		case opDiscard:
			g.q.Discard(g.ids...)
		}
		g.ids = g.ids[:0]
		g.q = nil
	}
	ch.settleScratch = groups[:0]
	return nil
}

// recover requeues every unacknowledged delivery of the channel (RabbitMQ
// treats basic.recover requeue=false the same way).
func (ch *channel) recover() {
	o := ch.c.out
	o.mu.Lock()
	recs := ch.unacked
	ch.unacked = nil
	o.mu.Unlock()
	var groups []queueIDs
	for _, r := range recs {
		if !r.settled {
			groups = addToGroup(groups, r.queue, r.id)
		}
	}
	for _, g := range groups {
		g.q.Requeue(g.ids...)
	}
}
