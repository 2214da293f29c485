package broker

import (
	"sync"
	"sync/atomic"
)

// Owner identifies the connection that owns exclusive queues and consumers.
// Zero means "nobody" (management API, internal use).
type Owner uint64

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

// entry is one message's place in one queue.
type entry struct {
	seq         uint64
	msg         *Message
	redelivered bool
	consumer    *Consumer // who holds it while unacked; nil for Get
}

// Queue is a FIFO of messages with competing consumers.
type Queue struct {
	name       string
	vhost      *VHost
	durable    bool
	exclusive  bool
	autoDelete bool
	args       Table
	owner      Owner
	internal   bool // hidden from listings (direct reply-to)

	published atomic.Uint64
	delivered atomic.Uint64
	acked     atomic.Uint64

	mu sync.Mutex // guards everything below
	// ready holds never-delivered messages in order; requeued holds
	// messages that came back, delivered first and in their original order.
	ready     ring[entry]
	requeued  seqHeap
	unacked   map[uint64]entry
	nextSeq   uint64
	consumers []*Consumer
	rr        int // round-robin position in consumers
	deleted   bool
	// hadConsumer arms auto-delete: the queue goes when its last consumer does.
	hadConsumer bool
	// flowWait is closed when a congested queue drains to flowLow; publishers
	// that outran its consumers wait on it (see Publisher.WaitFlow).
	flowWait chan struct{}
}

// Flow-control watermarks: a queue with consumers whose backlog exceeds
// flowHigh slows its publishers until it is back at flowLow. A queue
// without consumers is a buffer and never slows anyone.
const (
	flowHigh = 8192
	flowLow  = 4096
)

func newQueue(v *VHost, name string, o QueueOptions) *Queue {
	q := &Queue{
		name:       name,
		vhost:      v,
		durable:    o.Durable,
		exclusive:  o.Exclusive,
		autoDelete: o.AutoDelete,
		args:       o.Args,
		unacked:    make(map[uint64]entry),
	}
	if o.Exclusive {
		q.owner = o.Owner
	}
	return q
}

// Name is the queue's name.
func (q *Queue) Name() string { return q.name }

// VHost is the virtual host the queue lives in.
func (q *Queue) VHost() *VHost { return q.vhost }

// Durable reports whether the queue survives a restart.
func (q *Queue) Durable() bool { return q.durable }

// Exclusive reports whether the queue belongs to one connection.
func (q *Queue) Exclusive() bool { return q.exclusive }

// AutoDelete reports whether the queue goes away with its last consumer.
func (q *Queue) AutoDelete() bool { return q.autoDelete }

// Args are the queue's declaration arguments.
func (q *Queue) Args() Table { return q.args }

// QueueStats is a snapshot of a queue's counters.
type QueueStats struct {
	Ready, Unacked, Consumers  int
	Published, Delivered, Acks uint64
}

// Stats returns a consistent snapshot of the queue's depth and counters.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	s := QueueStats{Ready: q.readyLenLocked(), Unacked: len(q.unacked), Consumers: len(q.consumers)}
	q.mu.Unlock()
	s.Published, s.Delivered, s.Acks = q.published.Load(), q.delivered.Load(), q.acked.Load()
	return s
}

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

func (q *Queue) readyLenLocked() int { return q.ready.Len() + q.requeued.Len() }

func (q *Queue) peekLocked() *entry {
	if q.requeued.Len() > 0 {
		return q.requeued.Min()
	}
	return q.ready.Front()
}

func (q *Queue) popLocked() entry {
	if q.requeued.Len() > 0 {
		return q.requeued.Pop()
	}
	return q.ready.PopFront()
}

// enqueue appends a routed message and hands it out if a consumer can take
// it. congested reports that the queue's consumers are falling behind.
func (q *Queue) enqueue(m *Message) (ok, congested bool) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return false, false
	}
	q.nextSeq++
	q.ready.PushBack(entry{seq: q.nextSeq, msg: m})
	q.published.Add(1)
	if len(q.consumers) > 0 {
		q.dispatchLocked()
		congested = q.readyLenLocked() > flowHigh
	}
	q.mu.Unlock()
	return true, congested
}

// flowChan returns a channel that is closed once the queue has drained
// enough for publishers to go on, or nil if they may go on now. Queues that
// owner itself consumes from never hold it back: its acks would be stuck
// behind its own blocked reads.
func (q *Queue) flowChan(owner Owner) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted || len(q.consumers) == 0 || q.readyLenLocked() <= flowLow {
		return nil
	}
	for _, c := range q.consumers {
		if owner != 0 && c.owner == owner {
			return nil
		}
	}
	if q.flowWait == nil {
		q.flowWait = make(chan struct{})
	}
	return q.flowWait
}

// releaseFlowLocked wakes waiting publishers once the backlog is low enough
// or nobody consumes any more.
func (q *Queue) releaseFlowLocked() {
	if q.flowWait != nil && (q.readyLenLocked() <= flowLow || len(q.consumers) == 0 || q.deleted) {
		close(q.flowWait)
		q.flowWait = nil
	}
}

// dispatch hands ready messages to consumers with credit.
func (q *Queue) dispatch() {
	q.mu.Lock()
	q.dispatchLocked()
	q.mu.Unlock()
}

func (q *Queue) dispatchLocked() {
	for q.readyLenLocked() > 0 {
		n := len(q.consumers)
		if n == 0 || q.deleted {
			return
		}
		delivered := false
		for i := 0; i < n; i++ {
			idx := (q.rr + i) % n
			c := q.consumers[idx]
			if !c.acquire() {
				continue
			}
			e := q.peekLocked()
			d := Delivery{Message: e.msg, Queue: q, ID: e.seq, Redelivered: e.redelivered, Consumer: c}
			if !c.sink.Deliver(d) {
				c.unacquire()
				continue
			}
			taken := q.popLocked()
			if !c.noAck {
				taken.consumer = c
				q.unacked[taken.seq] = taken
			}
			q.delivered.Add(1)
			q.rr = (idx + 1) % n
			delivered = true
			break
		}
		if !delivered {
			break
		}
	}
	q.releaseFlowLocked()
}

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
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return nil, errorf(CodeNotFound, "no queue '%s' in vhost '%s'", q.name, q.vhost.name)
	}
	if err := q.usableBy(o.Owner); err != nil {
		return nil, err
	}
	if o.Exclusive && len(q.consumers) > 0 {
		return nil, errorf(CodeAccessRefused, "queue '%s' in vhost '%s' in exclusive use", q.name, q.vhost.name)
	}
	for _, x := range q.consumers {
		if x.exclusive {
			return nil, errorf(CodeAccessRefused, "queue '%s' in vhost '%s' in exclusive use", q.name, q.vhost.name)
		}
	}
	if c.limiter != nil {
		c.limiter.add(c)
	}
	q.consumers = append(q.consumers, c)
	q.hadConsumer = true
	q.dispatchLocked()
	return c, nil
}

func (q *Queue) removeConsumer(c *Consumer) {
	if c.cancelled.Swap(true) {
		return
	}
	if c.limiter != nil {
		c.limiter.remove(c)
	}
	q.mu.Lock()
	for i, x := range q.consumers {
		if x == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if q.rr > i {
				q.rr--
			}
			break
		}
	}
	if len(q.consumers) > 0 {
		q.rr %= len(q.consumers)
	} else {
		q.rr = 0
	}
	gone := q.autoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	q.releaseFlowLocked()
	q.mu.Unlock()
	if gone {
		q.vhost.deleteQueue(q)
	}
}

// Get takes the next ready message (AMQP basic.get). With noAck the
// message is settled at once; otherwise it waits for Ack/Requeue/Discard.
func (q *Queue) Get(owner Owner, noAck bool) (Delivery, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return Delivery{}, false, errorf(CodeNotFound, "no queue '%s' in vhost '%s'", q.name, q.vhost.name)
	}
	if err := q.usableBy(owner); err != nil {
		return Delivery{}, false, err
	}
	if q.readyLenLocked() == 0 {
		return Delivery{}, false, nil
	}
	e := q.popLocked()
	if !noAck {
		q.unacked[e.seq] = e
	}
	q.delivered.Add(1)
	return Delivery{Message: e.msg, Queue: q, ID: e.seq, Redelivered: e.redelivered, Remaining: q.readyLenLocked()}, true, nil
}

// Ack settles deliveries as done.
func (q *Queue) Ack(ids ...uint64) { q.settle(ids, settleAck) }

// Requeue puts deliveries back near the head of the queue, in their
// original order, flagged redelivered.
func (q *Queue) Requeue(ids ...uint64) { q.settle(ids, settleRequeue) }

// Discard settles deliveries as rejected without requeue.
func (q *Queue) Discard(ids ...uint64) { q.settle(ids, settleDiscard) }

type settleKind int

const (
	settleAck settleKind = iota
	settleRequeue
	settleDiscard
)

func (q *Queue) settle(ids []uint64, kind settleKind) {
	var wake [4]*Limiter
	wakes := wake[:0]
	q.mu.Lock()
	var last *Consumer
	var run int64
	flush := func() {
		if last != nil && run > 0 {
			if l := last.release(run); l != nil && !containsLimiter(wakes, l) {
				wakes = append(wakes, l)
			}
		}
	}
	for _, id := range ids {
		e, ok := q.unacked[id]
		if !ok {
			continue
		}
		delete(q.unacked, id)
		if e.consumer != last {
			flush()
			last, run = e.consumer, 0
		}
		run++
		switch kind {
		case settleAck:
			q.acked.Add(1)
		case settleRequeue:
			if !q.deleted {
				e.redelivered = true
				e.consumer = nil
				q.requeued.Push(e)
			}
		}
	}
	flush()
	if len(q.consumers) > 0 {
		q.dispatchLocked()
	}
	q.mu.Unlock()
	for _, l := range wakes {
		l.wake()
	}
}

func containsLimiter(ls []*Limiter, l *Limiter) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

// purge drops every ready message and returns how many.
func (q *Queue) purge() int {
	q.mu.Lock()
	n := q.readyLenLocked()
	q.ready.Clear()
	q.requeued = nil
	q.releaseFlowLocked()
	q.mu.Unlock()
	return n
}

// markDeleted empties the queue, cancels its consumers and returns the
// number of ready messages dropped. The vhost removes it from its maps.
func (q *Queue) markDeleted() (int, bool) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return 0, false
	}
	q.deleted = true
	n := q.readyLenLocked()
	q.ready.Clear()
	q.requeued = nil
	// Keep q.unacked: the deliveries are still outstanding at their
	// consumers, and settling them later must return their credit (a
	// channel-wide basic.qos limiter is shared with other queues' consumers
	// and would otherwise stay full forever). settle drops them instead of
	// requeueing once the queue is deleted, and every adapter settles or
	// requeues its outstanding deliveries when its channel closes, so the
	// entries do not outlive the last holder.
	consumers := q.consumers
	q.consumers = nil
	q.releaseFlowLocked()
	for _, c := range consumers {
		c.cancelled.Store(true)
		c.sink.Cancelled(c)
	}
	q.mu.Unlock()
	for _, c := range consumers {
		if c.limiter != nil {
			c.limiter.remove(c)
		}
	}
	return n, true
}

func (q *Queue) consumerCount() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.consumers)
}
