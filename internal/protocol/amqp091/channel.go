package amqp091

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// Content assembly states of a channel.
type contentState uint8

const (
	expectMethod contentState = iota
	expectHeader
	expectBody
)

// channel is one AMQP channel's state machine. Unless noted, fields belong
// to the connection's read loop.
type channel struct {
	c       *conn
	hmemo   frame.Memo // the previous published content header's values, to share
	id      uint16
	closing bool // we sent channel.close and wait for close-ok
	// timedOut is set (from a queue's timer) when a delivery outlived the
	// consumer timeout and channel.close was sent for it.
	timedOut atomic.Bool

	pub        *broker.Publisher
	expect     contentState
	publishing *broker.Message
	bodySize   uint64
	mandatory  bool
	// pubAllowed is the last exchange this channel was allowed to publish
	// to, valid while the users' generation is pubAllowedGen: publishing
	// to the same exchange again then costs one atomic load.
	pubAllowed    string
	pubAllowedGen uint64
	pubAllowedOK  bool

	confirm         bool
	confirms        confirms
	confirmQueued   bool
	tx              bool
	txCommits       *broker.ConfirmQueue[struct{}] // tx.commit-oks, each once its publishes are on disk
	txPublishes     []txPublish
	txSettles       []txSettle
	prefetch        int
	limiter         *broker.Limiter
	lastQueue       string
	replyQueue      *broker.Queue
	replyConsumer   string
	settleScratch   []queueIDs
	unackedScratchN int

	// Guarded by c.out.mu: delivery tags are assigned in the order the
	// deliveries are queued for the wire.
	nextTag    uint64
	unacked    []unackedRec // ascending tags; settled ones are trimmed from the front
	flowPaused bool

	mu        sync.Mutex // guards consumers; taken under queue locks by Cancelled
	consumers map[string]*consumerSink

	// stats mirror read-loop settings for the management API (see
	// conn.channelList); written only by the (rare) methods that change them.
	stats struct {
		prefetch, globalPrefetch atomic.Int32
		confirm, tx              atomic.Bool
	}
}

type unackedRec struct {
	tag     uint64
	queue   *broker.Queue
	id      uint64
	settled bool
}

type queueIDs struct {
	q   *broker.Queue
	ids []uint64
}

type txPublish struct {
	msg       *broker.Message
	mandatory bool
}

type settleOp uint8

const (
	opAck settleOp = iota
	opRequeue
	opDiscard
)

type txSettle struct {
	tag      uint64
	multiple bool
	op       settleOp
}

func newChannel(c *conn, id uint16) *channel {
	ch := &channel{c: c, id: id, pub: c.vhost.Publisher(), consumers: make(map[string]*consumerSink)}
	ch.confirms.ch = ch
	ch.txCommits = broker.NewConfirmQueue(ch.sendCommitOk)
	return ch
}

func (ch *channel) send(m frame.Method) {
	ch.c.out.push(outItem{kind: itemMethod, channel: ch.id, method: m})
}

// fail closes the channel after a channel-level exception.
func (ch *channel) fail(e *amqpError) {
	ch.c.log.Debug("amqp channel error", "channel", ch.id, "code", e.code, "reason", e.text)
	// Publishes before the failing method did succeed: confirm them ahead
	// of channel.close (once closing, flushConfirms sends nothing).
	ch.flushConfirms()
	ch.confirms.close()
	ch.send(&frame.ChannelClose{ReplyCode: e.code, ReplyText: replyText(e.code, e.text), FailingClassID: e.classID, FailingMethodID: e.methodID})
	ch.closing = true
	ch.release()
}

// release cancels the channel's consumers and requeues its unacknowledged
// deliveries, in order.
func (ch *channel) release() {
	ch.confirms.close()
	ch.txCommits.Close() // no commit-ok after channel.close(-ok)
	ch.mu.Lock()
	sinks := make([]*consumerSink, 0, len(ch.consumers))
	for _, s := range ch.consumers {
		sinks = append(sinks, s)
	}
	clear(ch.consumers)
	ch.mu.Unlock()
	for _, s := range sinks {
		s.bc.Cancel()
	}
	ch.replyQueue, ch.replyConsumer = nil, ""
	o := ch.c.out
	o.mu.Lock()
	recs := ch.unacked
	ch.unacked = nil
	o.mu.Unlock()
	groups := ch.settleScratch[:0]
	for _, r := range recs {
		if !r.settled {
			groups = addToGroup(groups, r.queue, r.id)
		}
	}
	for _, g := range groups {
		g.q.Requeue(g.ids...)
	}
	ch.txPublishes, ch.txSettles = nil, nil
	ch.publishing = nil
	ch.expect = expectMethod
}

func addToGroup(groups []queueIDs, q *broker.Queue, id uint64) []queueIDs {
	for i := range groups {
		if groups[i].q == q {
			groups[i].ids = append(groups[i].ids, id)
			return groups
		}
	}
	return append(groups, queueIDs{q: q, ids: []uint64{id}})
}

func generateTag(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func (ch *channel) handleMethod(m frame.Method) error {
	if ch.expect != expectMethod {
		return connectionError(frame.UnexpectedFrame, m, "expected content header for class 60, got non content header frame instead (%s)", m.Name())
	}
	switch m := m.(type) {
	case *frame.BasicPublish:
		return ch.basicPublish(m)
	case *frame.BasicAck:
		return ch.settle(m, m.DeliveryTag, m.Multiple, opAck)
	case *frame.BasicNack:
		op := opDiscard
		if m.Requeue {
			op = opRequeue
		}
		return ch.settle(m, m.DeliveryTag, m.Multiple, op)
	case *frame.BasicReject:
		op := opDiscard
		if m.Requeue {
			op = opRequeue
		}
		return ch.settle(m, m.DeliveryTag, false, op)
	case *frame.BasicQos:
		return ch.basicQos(m)
	case *frame.BasicConsume:
		return ch.basicConsume(m)
	case *frame.BasicCancel:
		return ch.basicCancel(m)
	case *frame.BasicGet:
		return ch.basicGet(m)
	case *frame.BasicRecover:
		if !m.Requeue {
			// RabbitMQ does not implement redelivery to the same consumer.
			return connectionError(frame.NotImplemented, m, "requeue=false")
		}
		ch.recover()
		ch.send(&frame.BasicRecoverOk{})
		return nil
	case *frame.BasicRecoverAsync:
		ch.recover()
		return nil
	case *frame.ExchangeDeclare:
		return ch.exchangeDeclare(m)
	case *frame.ExchangeDelete:
		return ch.exchangeDelete(m)
	case *frame.ExchangeBind:
		if err := ch.checkExchangeBind(m, m.Destination, m.Source); err != nil {
			return err
		}
		if err := ch.allowTopic(m, auth.Read, m.Source, m.RoutingKey); err != nil {
			return err
		}
		if err := ch.c.vhost.BindExchange(m.Destination, m.Source, m.RoutingKey, m.Arguments); err != nil {
			return fromBroker(err, m)
		}
		if !m.NoWait {
			ch.send(&frame.ExchangeBindOk{})
		}
		return nil
	case *frame.ExchangeUnbind:
		if err := ch.checkExchangeBind(m, m.Destination, m.Source); err != nil {
			return err
		}
		if err := ch.c.vhost.UnbindExchange(m.Destination, m.Source, m.RoutingKey, m.Arguments); err != nil {
			return fromBroker(err, m)
		}
		if !m.NoWait {
			ch.send(&frame.ExchangeUnbindOk{})
		}
		return nil
	case *frame.QueueDeclare:
		return ch.queueDeclare(m)
	case *frame.QueueBind:
		return ch.queueBind(m)
	case *frame.QueueUnbind:
		return ch.queueUnbind(m)
	case *frame.QueuePurge:
		return ch.queuePurge(m)
	case *frame.QueueDelete:
		return ch.queueDelete(m)
	case *frame.ConfirmSelect:
		if ch.tx {
			return channelError(frame.PreconditionFailed, m, "cannot switch from tx to confirm mode")
		}
		ch.confirm = true
		ch.stats.confirm.Store(true)
		if !m.NoWait {
			ch.send(&frame.ConfirmSelectOk{})
		}
		return nil
	case *frame.TxSelect:
		if ch.confirm {
			return channelError(frame.PreconditionFailed, m, "cannot switch from confirm to tx mode")
		}
		ch.tx = true
		ch.stats.tx.Store(true)
		ch.send(&frame.TxSelectOk{})
		return nil
	case *frame.TxCommit:
		return ch.txCommit(m)
	case *frame.TxRollback:
		if !ch.tx {
			return channelError(frame.PreconditionFailed, m, "channel is not transactional")
		}
		ch.txPublishes, ch.txSettles = ch.txPublishes[:0], ch.txSettles[:0]
		ch.send(&frame.TxRollbackOk{})
		return nil
	case *frame.ChannelFlow:
		ch.channelFlow(m.Active)
		ch.send(&frame.ChannelFlowOk{Active: m.Active})
		return nil
	case *frame.ChannelFlowOk:
		return nil
	case *frame.ChannelClose:
		// Confirms are batched until the read loop drains its input; a
		// channel.close read in the same batch as the publishes would
		// otherwise get its basic.ack written after channel.close-ok, and
		// clients (amqp091-go) treat a method on a closed channel as a
		// connection error. Send them now, ahead of close-ok.
		ch.flushConfirms()
		ch.confirms.close()
		ch.release()
		delete(ch.c.channels, ch.id)
		// Gone from the management API before the client learns it closed.
		ch.c.channelsChanged()
		ch.send(&frame.ChannelCloseOk{})
		return nil
	case *frame.ChannelCloseOk:
		return connectionError(frame.ChannelError, m, "unexpected channel.close-ok on channel %d", ch.id)
	}
	return connectionError(frame.NotImplemented, m, "%s is not a method a client may send", m.Name())
}

func (ch *channel) channelFlow(active bool) {
	o := ch.c.out
	o.mu.Lock()
	ch.flowPaused = !active
	o.mu.Unlock()
	if active {
		for _, s := range ch.sinks() {
			s.bc.Resume()
		}
	}
}

func (ch *channel) sinks() []*consumerSink {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	out := make([]*consumerSink, 0, len(ch.consumers))
	for _, s := range ch.consumers {
		out = append(out, s)
	}
	return out
}

func (ch *channel) queueName(name string, m frame.Method) (string, error) {
	if name != "" {
		return name, nil
	}
	if ch.lastQueue == "" {
		return "", channelError(frame.NotFound, m, "no previously declared queue")
	}
	return ch.lastQueue, nil
}

// allow refuses, with 403 ACCESS_REFUSED on the channel, an operation
// the user lacks the permission kind for on the named resource.
func (ch *channel) allow(m frame.Method, kind auth.Kind, res auth.Resource, name string) error {
	if res == auth.Exchange {
		name = auth.ExchangeResource(name)
	}
	if err := ch.c.checker().Check(ch.c.user, ch.c.vhost.Name(), kind, res, name); err != nil {
		return channelError(frame.AccessRefused, m, "%s", err.Error())
	}
	return nil
}

// allowPublish is allow(write, exchange) with a one-entry cache, because
// it runs for every published message.
func (ch *channel) allowPublish(m frame.Method, exchange string) error {
	gen := ch.c.h.users.Generation()
	if ch.pubAllowedOK && ch.pubAllowedGen == gen && ch.pubAllowed == exchange {
		return nil
	}
	if err := ch.allow(m, auth.Write, auth.Exchange, exchange); err != nil {
		return err
	}
	ch.pubAllowed, ch.pubAllowedGen, ch.pubAllowedOK = exchange, gen, true
	return nil
}

// checkExchangeBind: exchange.bind/unbind need write on the destination
// and read on the source.
func (ch *channel) checkExchangeBind(m frame.Method, dest, source string) error {
	if err := ch.allow(m, auth.Write, auth.Exchange, dest); err != nil {
		return err
	}
	return ch.allow(m, auth.Read, auth.Exchange, source)
}

// checkArgsExchange: declaring with an alternate or dead-letter exchange
// also needs write on that exchange and read on the declared resource.
func (ch *channel) checkArgsExchange(m frame.Method, args broker.Table, key string, res auth.Resource, name string) error {
	x, ok := args[key].(string)
	if !ok {
		return nil
	}
	if err := ch.allow(m, auth.Write, auth.Exchange, x); err != nil {
		return err
	}
	return ch.allow(m, auth.Read, res, name)
}

func (ch *channel) exchangeDeclare(m *frame.ExchangeDeclare) error {
	if !m.Passive {
		if err := ch.allow(m, auth.Configure, auth.Exchange, m.Exchange); err != nil {
			return err
		}
		if err := ch.checkArgsExchange(m, m.Arguments, "alternate-exchange", auth.Exchange, m.Exchange); err != nil {
			return err
		}
	}
	_, err := ch.c.vhost.DeclareExchange(m.Exchange, broker.ExchangeOptions{
		Kind: m.Type, Durable: m.Durable, AutoDelete: m.AutoDelete, Internal: m.Internal,
		Args: m.Arguments, Passive: m.Passive,
	})
	if err != nil {
		return fromBroker(err, m)
	}
	if !m.NoWait {
		ch.send(&frame.ExchangeDeclareOk{})
	}
	return nil
}

func (ch *channel) exchangeDelete(m *frame.ExchangeDelete) error {
	if err := ch.allow(m, auth.Configure, auth.Exchange, m.Exchange); err != nil {
		return err
	}
	err := ch.c.vhost.DeleteExchange(m.Exchange, m.IfUnused)
	if err != nil && !isNotFound(err) {
		return fromBroker(err, m)
	}
	if !m.NoWait {
		ch.send(&frame.ExchangeDeleteOk{})
	}
	return nil
}

func isNotFound(err error) bool {
	be, ok := err.(*broker.Error)
	return ok && be.Code == broker.CodeNotFound
}

func (ch *channel) queueDeclare(m *frame.QueueDeclare) error {
	name := m.Queue
	// Direct reply-to, as RabbitMQ: declaring (passively or not) the
	// pseudo-queue "amq.rabbitmq.reply-to" succeeds, and so does declaring
	// a rewritten reply address while its caller is still there, whoever
	// asks: clients use the former to set up replies and RPC servers the
	// latter to check a caller has not gone away. Message count 0,
	// consumer count 1.
	if strings.HasPrefix(name, broker.DirectReplyTo) {
		if name != broker.DirectReplyTo {
			if _, err := ch.c.vhost.Queue(name); err != nil || !strings.HasPrefix(name, broker.DirectReplyTo+".") {
				return channelError(frame.NotFound, m, "no queue '%s' in vhost '%s'", name, ch.c.vhost.Name())
			}
		}
		if !m.NoWait {
			ch.send(&frame.QueueDeclareOk{Queue: name, MessageCount: 0, ConsumerCount: 1})
		}
		return nil
	}
	if m.Passive && name == "" {
		var err error
		if name, err = ch.queueName("", m); err != nil {
			return err
		}
	}
	if !m.Passive && name != "" {
		if err := ch.checkQueueDeclare(m, name); err != nil {
			return err
		}
	}
	q, err := ch.c.vhost.DeclareQueue(name, broker.QueueOptions{
		Durable: m.Durable, Exclusive: m.Exclusive, AutoDelete: m.AutoDelete,
		Args: m.Arguments, Owner: ch.c.owner, Passive: m.Passive,
	})
	if err != nil {
		return fromBroker(err, m)
	}
	if !m.Passive && name == "" {
		// The core names server-named queues itself, so the amq.gen- name
		// can only be checked after the fact: undo a refused declare.
		if err := ch.checkQueueDeclare(m, q.Name()); err != nil {
			_, _ = ch.c.vhost.DeleteQueue(q.Name(), ch.c.owner, false, false)
			return err
		}
	}
	ch.lastQueue = q.Name()
	if !m.NoWait {
		s := q.Stats()
		ch.send(&frame.QueueDeclareOk{Queue: q.Name(), MessageCount: uint32(s.Ready), ConsumerCount: uint32(s.Consumers)})
	}
	return nil
}

// checkQueueDeclare: configure on the queue, and with a dead-letter
// exchange write on it and read on the queue.
func (ch *channel) checkQueueDeclare(m frame.Method, name string) error {
	if err := ch.allow(m, auth.Configure, auth.Queue, name); err != nil {
		return err
	}
	return ch.checkArgsExchange(m, m.(*frame.QueueDeclare).Arguments, "x-dead-letter-exchange", auth.Queue, name)
}

// checkQueueBind: queue.bind/unbind need write on the queue and read on
// the exchange.
func (ch *channel) checkQueueBind(m frame.Method, queue, exchange string) error {
	if err := ch.allow(m, auth.Write, auth.Queue, queue); err != nil {
		return err
	}
	return ch.allow(m, auth.Read, auth.Exchange, exchange)
}

func (ch *channel) queueBind(m *frame.QueueBind) error {
	name, err := ch.queueName(m.Queue, m)
	if err != nil {
		return err
	}
	if err := ch.checkQueueBind(m, name, m.Exchange); err != nil {
		return err
	}
	if err := ch.allowTopic(m, auth.Read, m.Exchange, m.RoutingKey); err != nil {
		return err
	}
	if err := ch.c.vhost.BindQueue(name, m.Exchange, m.RoutingKey, m.Arguments, ch.c.owner); err != nil {
		return fromBroker(err, m)
	}
	if !m.NoWait {
		ch.send(&frame.QueueBindOk{})
	}
	return nil
}

func (ch *channel) queueUnbind(m *frame.QueueUnbind) error {
	name, err := ch.queueName(m.Queue, m)
	if err != nil {
		return err
	}
	if err := ch.checkQueueBind(m, name, m.Exchange); err != nil {
		return err
	}
	if err := ch.c.vhost.UnbindQueue(name, m.Exchange, m.RoutingKey, m.Arguments, ch.c.owner); err != nil {
		return fromBroker(err, m)
	}
	ch.send(&frame.QueueUnbindOk{})
	return nil
}

func (ch *channel) queuePurge(m *frame.QueuePurge) error {
	name, err := ch.queueName(m.Queue, m)
	if err != nil {
		return err
	}
	if err := ch.allow(m, auth.Read, auth.Queue, name); err != nil {
		return err
	}
	n, err := ch.c.vhost.PurgeQueue(name, ch.c.owner)
	if err != nil {
		return fromBroker(err, m)
	}
	if !m.NoWait {
		ch.send(&frame.QueuePurgeOk{MessageCount: uint32(n)})
	}
	return nil
}

func (ch *channel) queueDelete(m *frame.QueueDelete) error {
	name, err := ch.queueName(m.Queue, m)
	if err != nil {
		return err
	}
	if err := ch.allow(m, auth.Configure, auth.Queue, name); err != nil {
		return err
	}
	n, err := ch.c.vhost.DeleteQueue(name, ch.c.owner, m.IfUnused, m.IfEmpty)
	if err != nil && !isNotFound(err) {
		return fromBroker(err, m)
	}
	if !m.NoWait {
		ch.send(&frame.QueueDeleteOk{MessageCount: uint32(n)})
	}
	return nil
}

func (ch *channel) basicQos(m *frame.BasicQos) error {
	if m.PrefetchSize != 0 {
		return connectionError(frame.NotImplemented, m, "prefetch_size!=0 (%d)", m.PrefetchSize)
	}
	if m.Global {
		ch.stats.globalPrefetch.Store(int32(m.PrefetchCount))
	} else {
		ch.stats.prefetch.Store(int32(m.PrefetchCount))
	}
	if !m.Global {
		ch.prefetch = int(m.PrefetchCount)
	} else if ch.limiter == nil {
		ch.limiter = broker.NewLimiter(int(m.PrefetchCount))
	} else {
		ch.limiter.SetLimit(int(m.PrefetchCount))
	}
	ch.send(&frame.BasicQosOk{})
	return nil
}
