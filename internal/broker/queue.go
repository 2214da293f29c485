package broker

import "slices"

// A queue is a handle (Queue: what adapters, bindings and the management
// API hold) over one implementation of a queue kind (queueKind). The handle
// keeps what every kind shares: identity, declaration flags, arguments,
// exclusivity. The kind keeps the messages and decides what consuming
// means: classic (classic.go) reads destructively; quorum is, on one node,
// the classic engine under quorum's rules (quorum.go); a stream kind reads
// from an offset without removing anything and needs no change here or in
// classic.go (see docs/broker.md).

// Owner identifies the connection that owns exclusive queues and consumers.
// Zero means "nobody" (management API, internal use).
type Owner uint64

// Queue types (x-queue-type), as RabbitMQ names them.
const (
	QueueTypeClassic = "classic"
	QueueTypeQuorum  = "quorum"
	QueueTypeStream  = "stream"
)

// QueueOptions configure a queue declaration.
type QueueOptions struct {
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	Args       Table
	Owner      Owner // required for Exclusive
	// Passive only checks that the queue exists and may be used by Owner.
	Passive bool
}

// QueueStats is a snapshot of a queue's counters.
type QueueStats struct {
	Ready, Unacked, Consumers  int
	ReadyBytes                 int64
	Published, Delivered, Acks uint64
}

// queueKind is what a kind of queue implements. Methods are called
// without broker locks held unless their name ends in Locked; a kind
// guards its own state.
type queueKind interface {
	// Publishing: take a routed message (expiration in ms, -1 = none);
	// ok = it was taken, rejected = refused by a limit, congested = the
	// publisher should wait on flowChan, stored = a log record now names it.
	enqueue(m *Message, expiration int64) (ok, rejected, congested, stored bool)
	flowChan(owner Owner) <-chan struct{}

	// Consuming: attach a consumer built by the handle (its tag, credit,
	// sink and arguments are set), hand out what its credit allows, settle
	// what it was given. Deliveries name the handle and a kind-local ID.
	consume(c *Consumer) error
	dispatch() // a consumer's sink or credit has room again
	removeConsumer(c *Consumer)
	get(owner Owner, noAck bool) (Delivery, bool, error)
	settle(ids []uint64, how settleKind)
	touch(ids []uint64) // renew the consumer-timeout lease

	// Life cycle and inspection.
	used() // declared or used: restart the x-expires idle clock
	stats() QueueStats
	consumerList() []*Consumer
	policyName() string
	applyPolicy(p *Policy)
	purge() int
	markDeleted() (int, bool) // the vhost removed the queue: drop everything
	close()                   // the broker stops: stop timers only
}

// How deliveries are settled.
type settleKind int

const (
	settleAck settleKind = iota
	settleRequeue
	settleDiscard
)

// Queue is a queue of any kind, as adapters and bindings see it.
type Queue struct {
	name       string
	vhost      *VHost
	qtype      string // x-queue-type: classic or quorum
	durable    bool
	exclusive  bool
	autoDelete bool
	args       Table
	owner      Owner
	internal   bool // hidden from listings (direct reply-to)
	// logged: the kind keeps this queue's persistent messages in the
	// broker's log, so a publish writes the message record once for all
	// such targets (prepareStore).
	logged bool
	kind   queueKind
	// rpc is the lookup service's state of an rpc.S queue (services.go);
	// nil for others.
	rpc *serviceQueue
}

// newQueue builds the handle and the kind its x-queue-type selects; the
// arguments are already validated.
// Only a stream can fail here (its log cannot be opened).
func newQueue(v *VHost, name string, o QueueOptions, cfg queueConfig, p *Policy) (*Queue, error) {
	q := &Queue{name: name, vhost: v, qtype: cfg.queueType, durable: o.Durable, exclusive: o.Exclusive,
		autoDelete: o.AutoDelete, args: o.Args}
	q.rpc = newServiceQueue(name)
	if o.Exclusive {
		q.owner = o.Owner
	}
	switch cfg.queueType {
	case QueueTypeQuorum:
		q.kind = newQuorum(q, cfg, p)
	case QueueTypeStream:
		sq, err := newStream(q, cfg, p)
		if err != nil {
			return nil, err
		}
		q.kind = sq
	default:
		q.kind = newClassic(q, cfg, p)
	}
	return q, nil
}

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

// VHost is the virtual host the queue lives in.
func (q *Queue) VHost() *VHost { return q.vhost }

// Type is the queue's x-queue-type: "classic", "quorum" or "stream".
func (q *Queue) Type() string { return q.qtype }

// Durable reports whether the queue survives a restart.
func (q *Queue) Durable() bool { return q.durable }

// Exclusive reports whether the queue belongs to one connection.
func (q *Queue) Exclusive() bool { return q.exclusive }

// AutoDelete reports whether the queue goes away with its last consumer.
func (q *Queue) AutoDelete() bool { return q.autoDelete }

// Args are the queue's declaration arguments.
func (q *Queue) Args() Table { return q.args }

// Policy is the name of the policy applied to the queue, or "".
func (q *Queue) Policy() string { return q.kind.policyName() }

// Stats returns a consistent snapshot of the queue's depth and counters.
func (q *Queue) Stats() QueueStats { return q.kind.stats() }

// usableBy reports whether owner may use the queue (exclusive queues belong
// to the connection that declared them).
func (q *Queue) usableBy(owner Owner) error {
	if q.exclusive && q.owner != owner {
		return q.lockedError()
	}
	return nil
}

func (q *Queue) lockedError() error {
	return errorf(CodeResourceLocked, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", q.name, q.vhost.name)
}

func (q *Queue) notFound() error {
	return errorf(CodeNotFound, "no queue '%s' in vhost '%s'", q.name, q.vhost.name)
}

func (q *Queue) enqueue(m *Message, expiration int64) (ok, rejected, congested, stored bool) {
	return q.kind.enqueue(m, expiration)
}

func (q *Queue) flowChan(owner Owner) <-chan struct{} { return q.kind.flowChan(owner) }

// Consume attaches a consumer.
func (q *Queue) Consume(o ConsumerOptions) (*Consumer, error) {
	c := &Consumer{
		queue:     q,
		tag:       o.Tag,
		noAck:     o.NoAck,
		exclusive: o.Exclusive,
		prefetch:  int64(o.Prefetch),
		limiter:   o.Limiter,
		sink:      o.Sink,
		args:      o.Args,
		owner:     o.Owner,
	}
	if p, ok := o.Args["x-priority"]; ok {
		n, isInt := asInt(p)
		if !isInt {
			return nil, errorf(CodePreconditionFailed, "invalid arg 'x-priority': %v is not an integer", p)
		}
		c.priority = n
	}
	if err := q.kind.consume(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Get takes the next ready message (AMQP basic.get). With noAck the
// message is settled at once; otherwise it waits for Ack/Requeue/Discard.
func (q *Queue) Get(owner Owner, noAck bool) (Delivery, bool, error) { return q.kind.get(owner, noAck) }

// Ack settles deliveries as done.
func (q *Queue) Ack(ids ...uint64) { q.settle(ids, settleAck) }

// Requeue puts deliveries back near the head of the queue, in their
// original order, flagged redelivered (or dead-letters them once they pass
// x-delivery-limit).
func (q *Queue) Requeue(ids ...uint64) { q.settle(ids, settleRequeue) }

// Discard settles deliveries as rejected without requeue; they are
// dead-lettered if the queue has a dead-letter exchange.
func (q *Queue) Discard(ids ...uint64) { q.settle(ids, settleDiscard) }

// Touch renews the consumer-timeout lease on unacknowledged deliveries.
func (q *Queue) Touch(ids ...uint64) {
	if c, ok := q.kind.(*classicQueue); ok {
		c.touch(ids)
		return
	}
	q.kind.touch(slices.Clone(ids))
}

// settle calls the classic engine directly when it is the kind: passed
// through the interface, ids would escape and every Ack would allocate its
// variadic slice. Other kinds get a copy for the same reason.
func (q *Queue) settle(ids []uint64, how settleKind) {
	if c, ok := q.kind.(*classicQueue); ok {
		c.settle(ids, how)
		return
	}
	q.kind.settle(slices.Clone(ids), how)
}
