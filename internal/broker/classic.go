package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

// entry is one message's place in one queue.
// It is kept to 48 bytes: a deep queue holds millions of them (what only
// an unacknowledged delivery needs lives in held).
type entry struct {
	seq         uint64
	msg         *Message
	expiresAt   int64  // unix nanoseconds; 0 = never
	storeID     uint64 // the message in the log (persistent queues); 0 = none
	size        int32  // body bytes
	deliveries  uint32
	prio        uint8
	redelivered bool
	ownExpiry   bool // the message's own expiration set expiresAt (not monotonic)
	dead        bool // a tombstone (expired in place)
	transient   bool // storeID is a transient message paged out (see paging.go)
}

// held is a delivery awaiting its ack.
type held struct {
	entry
	consumer    *Consumer // nil for Get and for messages being moved
	deliveredAt int64     // unix nanoseconds (consumer timeout); 0 = not timed
}

// classicQueue is the classic kind: a FIFO of messages with competing
// consumers, destructive reads, priorities, TTL, length limits and
// dead-lettering; stored messages are paged out of RAM beyond a budget.
// It embeds its handle for the identity every kind shares (name, vhost,
// flags); its own state is below.
type classicQueue struct {
	*Queue
	persistent bool   // durable, not exclusive, and the broker has a log
	qid        uint64 // the queue's id in the log
	tqid       uint64 // where transient messages paged out of RAM are logged
	tpaged     bool   // some were (the queue's deletion must drop them)

	published atomic.Uint64
	delivered atomic.Uint64
	acked     atomic.Uint64

	mu          sync.Mutex // guards everything below
	cfg         queueConfig
	policy      *Policy
	ready       readySet
	unacked     map[uint64]held
	nextSeq     uint64
	consumers   []*Consumer // by consumer priority, then arrival
	rr          int         // round-robin position in consumers
	deleted     bool
	hadConsumer bool // arms auto-delete: the queue goes with its last consumer
	// flowWait is closed when a congested queue drains to flowLow; publishers
	// that outran its consumers wait on it (see Publisher.WaitFlow).
	flowWait chan struct{}
	timers   queueTimers
	// Work found under the lock that must run after it is released
	// (publishing dead letters takes other queues' locks).
	deadLetters []deadLetter
	timedOut    []*Consumer
	pagingIn    bool // the page-in worker is running (paging.go)
	// storeSeq orders this queue's Enqueue records in the log; it continues
	// from the highest recovered one.
	storeSeq uint64
}

// Flow-control watermarks: a queue with consumers whose backlog exceeds
// flowHigh slows its publishers until it is back at flowLow. A queue
// without consumers is a buffer and never slows anyone.
const (
	flowHigh = 8192
	flowLow  = 4096
)

// newClassic builds the classic implementation behind handle q.
func newClassic(q *Queue, cfg queueConfig, p *Policy) *classicQueue {
	c := &classicQueue{Queue: q, unacked: make(map[uint64]held), cfg: cfg, policy: p}
	c.ready.init(cfg.maxPriority)
	c.persistent = q.durable && !q.exclusive && q.vhost.broker.store != nil
	c.qid = queueID(q.vhost.name, q.name)
	c.tqid = queueID(q.vhost.name, "\x00transient:"+q.name)
	q.logged = c.persistent
	return c
}

func (q *classicQueue) close() {
	q.mu.Lock()
	q.deleted = true
	q.stopTimersLocked()
	q.mu.Unlock()
}

func (q *classicQueue) used() {
	q.mu.Lock()
	q.touchIdleLocked()
	q.mu.Unlock()
}

func (q *classicQueue) policyName() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.policy == nil {
		return ""
	}
	return q.policy.Name
}

func (q *classicQueue) stats() QueueStats {
	q.mu.Lock()
	s := QueueStats{Ready: q.ready.len(), ReadyBytes: q.ready.bytes, Unacked: len(q.unacked), Consumers: len(q.consumers)}
	q.mu.Unlock()
	s.Published, s.Delivered, s.Acks = q.published.Load(), q.delivered.Load(), q.acked.Load()
	return s
}

func (q *classicQueue) readyLenLocked() int { return q.ready.len() }

// unlock releases the queue's lock, then does the work that must not run
// under it: publishing dead letters, telling consumers they timed out.
func (q *classicQueue) unlock() {
	dls, timedOut, timeout := q.deadLetters, q.timedOut, q.cfg.consumerTimeout
	q.deadLetters, q.timedOut = nil, nil
	q.mu.Unlock()
	if len(dls) > 0 {
		q.vhost.publishDeadLetters(dls)
	}
	for _, c := range timedOut {
		if s, ok := c.sink.(TimeoutSink); ok {
			s.DeliveryTimedOut(c, timeout)
		}
	}
}

func (q *classicQueue) now() int64 { return q.vhost.broker.steadyNano() }

// enqueue appends a routed message and hands it out if a consumer can take
// it. rejected reports a length limit with a reject-publish overflow;
// congested that the queue's consumers are falling behind.
func (q *classicQueue) enqueue(m *Message, expiration int64) (ok, rejected, congested, stored bool) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return false, false, false, false
	}
	if q.cfg.overflow != OverflowDropHead && q.fullFor(len(m.Body)) {
		if q.cfg.overflow == OverflowRejectPublishDLX {
			q.deadLetterLocked(m, reasonMaxLen)
		}
		q.unlock()
		return false, true, false, false
	}
	q.nextSeq++
	e := entry{seq: q.nextSeq, msg: m, prio: q.priorityOf(m), size: int32(len(m.Body))}
	if q.persistent {
		e.storeID = m.storeID
	}
	if q.cfg.messageTTL >= 0 || expiration >= 0 {
		now := q.now()
		e.expiresAt = expiryTime(now, q.cfg.messageTTL, expiration)
		e.ownExpiry = expiration >= 0 && (q.cfg.messageTTL < 0 || time.Duration(expiration)*time.Millisecond < q.cfg.messageTTL)
	}
	if q.shouldPageLocked(&e) {
		e.msg = nil // the body stays in the log until it nears the head
	} else if e.storeID == 0 && q.overBudgetLocked() {
		q.pageTransientLocked(&e, m)
	}
	q.ready.push(e)
	q.published.Add(1)
	if q.persistent && m.storeID != 0 {
		q.storeSeq++
		q.storeLocked(store.Record{Kind: store.KindEnqueue, QueueID: q.qid, MessageID: m.storeID, Seq: q.storeSeq})
		stored = true
	}
	if len(q.consumers) > 0 {
		q.dispatchLocked()
		congested = q.ready.len() > flowHigh
	}
	q.enforceLimitsLocked()
	if e.expiresAt != 0 {
		q.trackExpiryLocked(e)
	}
	q.unlock()
	return true, false, congested, stored
}

func expiryTime(now int64, ttl time.Duration, expirationMs int64) int64 {
	at := int64(0)
	if ttl >= 0 {
		at = now + int64(ttl)
	}
	if expirationMs >= 0 {
		own := now + expirationMs*int64(time.Millisecond)
		if at == 0 || own < at {
			at = own
		}
	}
	if at == 0 {
		at = 1 // TTL 0 at time 0 cannot happen; keep "0 = never"
	}
	return at
}

func (q *classicQueue) priorityOf(m *Message) uint8 {
	p := m.Properties.Priority
	if p > q.cfg.maxPriority {
		return q.cfg.maxPriority
	}
	return p
}

// fullFor reports whether a message of size bytes would exceed a limit.
func (q *classicQueue) fullFor(size int) bool {
	return (q.cfg.maxLength >= 0 && int64(q.ready.len()) >= q.cfg.maxLength) ||
		(q.cfg.maxBytes >= 0 && q.ready.bytes+int64(size) > q.cfg.maxBytes)
}

// enforceLimitsLocked drops (dead-letters) from the head while the queue is
// over x-max-length or x-max-length-bytes (drop-head overflow).
func (q *classicQueue) enforceLimitsLocked() {
	for (q.cfg.maxLength >= 0 && int64(q.ready.len()) > q.cfg.maxLength) ||
		(q.cfg.maxBytes >= 0 && q.ready.bytes > q.cfg.maxBytes) {
		e, ok := q.ready.pop()
		if !ok {
			return
		}
		q.dropLocked(&e, reasonMaxLen)
	}
}

// dispatch hands ready messages to consumers with credit.
func (q *classicQueue) dispatch() {
	q.mu.Lock()
	q.dispatchLocked()
	q.unlock()
}

func (q *classicQueue) dispatchLocked() {
	var now int64
	for q.ready.len() > 0 && len(q.consumers) > 0 && !q.deleted {
		e, src := q.ready.peek()
		if e == nil {
			break
		}
		if e.expiresAt != 0 {
			if now == 0 {
				now = q.now()
			}
			if e.expiresAt <= now {
				dead := q.ready.take(src)
				q.dropLocked(&dead, reasonExpired)
				continue
			}
		}
		if e.msg == nil { // paged: wait for the page-in worker
			q.maybePageInLocked(true)
			break
		}
		if !q.deliverHeadLocked(e, src) {
			break
		}
	}
	q.maybePageInLocked(false)
	q.releaseFlowLocked()
}

// deliverHeadLocked offers the head entry to the consumers: by priority,
// round-robin among equals, only the active one under single-active-consumer.
func (q *classicQueue) deliverHeadLocked(e *entry, src source) bool {
	cs := q.consumers
	if q.cfg.singleActive {
		cs = cs[:1]
	}
	n := len(cs)
	for gs := 0; gs < n; {
		ge := gs + 1
		for ge < n && cs[ge].priority == cs[gs].priority {
			ge++
		}
		size := ge - gs
		start := q.rr
		if start < gs || start >= ge {
			start = gs
		}
		for i := 0; i < size; i++ {
			idx := gs + (start-gs+i)%size
			c := cs[idx]
			if !c.acquire() {
				continue
			}
			d := Delivery{Message: e.msg, Queue: q.Queue, ID: e.seq, Redelivered: e.redelivered, Consumer: c, DeliveryCount: e.deliveries}
			if q.rpc != nil {
				q.rpc.delivered(q.vhost, c, d.Message)
			}
			if !c.sink.Deliver(d) {
				c.unacquire()
				if q.rpc != nil {
					q.rpc.undelivered(q.vhost, c, d.Message)
				}
				continue
			}
			taken := q.ready.take(src)
			taken.deliveries++
			if c.noAck {
				q.forgetLocked(&taken)
			} else {
				q.markDeliveredLocked(&taken)
				h := held{entry: taken, consumer: c}
				if q.cfg.consumerTimeout > 0 {
					h.deliveredAt = q.now()
					q.armConsumerTimeoutLocked()
				}
				q.unacked[taken.seq] = h
			}
			q.delivered.Add(1)
			q.rr = idx + 1
			return true
		}
		gs = ge
	}
	return false
}

func (q *classicQueue) consume(c *Consumer) error {
	q.mu.Lock()
	defer q.unlock()
	if q.deleted {
		return errorf(CodeNotFound, "no queue '%s' in vhost '%s'", q.name, q.vhost.name)
	}
	if err := q.usableBy(c.owner); err != nil {
		return err
	}
	for _, x := range q.consumers {
		if x.exclusive || (c.exclusive && len(q.consumers) > 0) {
			return errorf(CodeAccessRefused, "queue '%s' in vhost '%s' in exclusive use", q.name, q.vhost.name)
		}
	}
	if c.limiter != nil {
		c.limiter.add(c)
	}
	// Keep consumers ordered by priority, arrival order among equals.
	i := len(q.consumers)
	if !q.cfg.singleActive {
		for i > 0 && q.consumers[i-1].priority < c.priority {
			i--
		}
	}
	if q.rpc != nil {
		q.rpc.joined(c, q.vhost.broker.now())
	}
	q.consumers = append(q.consumers, nil)
	copy(q.consumers[i+1:], q.consumers[i:])
	q.consumers[i] = c
	q.hadConsumer = true
	q.stopIdleTimerLocked()
	q.dispatchLocked()
	return nil
}

func (q *classicQueue) removeConsumer(c *Consumer) {
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
	if len(q.consumers) == 0 {
		q.rr = 0
		q.touchIdleLocked()
	} else if q.cfg.singleActive {
		q.dispatchLocked() // the next consumer takes over
	}
	gone := q.autoDelete && q.hadConsumer && len(q.consumers) == 0 && !q.deleted
	q.releaseFlowLocked()
	q.unlock()
	if gone {
		q.vhost.deleteQueue(q.Queue)
	}
}

func (q *classicQueue) get(owner Owner, noAck bool) (Delivery, bool, error) {
	q.mu.Lock()
	defer q.unlock()
	if q.deleted {
		return Delivery{}, false, errorf(CodeNotFound, "no queue '%s' in vhost '%s'", q.name, q.vhost.name)
	}
	if err := q.usableBy(owner); err != nil {
		return Delivery{}, false, err
	}
	q.touchIdleLocked()
	var now int64
	for {
		e, src := q.ready.peek()
		if e == nil {
			return Delivery{}, false, nil
		}
		if e.expiresAt != 0 {
			if now == 0 {
				now = q.now()
			}
			if e.expiresAt <= now {
				dead := q.ready.take(src)
				q.dropLocked(&dead, reasonExpired)
				continue
			}
		}
		if e.msg == nil {
			// Paged: read it back without holding the lock, then look again.
			seq, prio, id := e.seq, e.prio, e.storeID
			q.mu.Unlock()
			m, err := q.vhost.broker.loadPaged(id)
			q.mu.Lock()
			if p := q.ready.find(seq, prio); p != nil && p.msg == nil && p.storeID == id {
				if err != nil {
					q.vhost.broker.log.Error("cannot read a paged message back from the log; it is dropped", "queue", q.name, "message_id", id, "err", err)
					if dead, ok := q.ready.tombstone(seq, prio); ok {
						q.forgetLocked(&dead)
					}
				} else {
					q.ready.attach(p, m)
				}
			}
			if q.deleted {
				return Delivery{}, false, errorf(CodeNotFound, "no queue '%s' in vhost '%s'", q.name, q.vhost.name)
			}
			continue
		}
		taken := q.ready.take(src)
		taken.deliveries++
		if noAck {
			q.forgetLocked(&taken)
		} else {
			q.markDeliveredLocked(&taken)
			q.unacked[taken.seq] = held{entry: taken}
		}
		q.delivered.Add(1)
		q.maybePageInLocked(false)
		q.releaseFlowLocked()
		return Delivery{Message: taken.msg, Queue: q.Queue, ID: taken.seq, Redelivered: taken.redelivered,
			Remaining: q.ready.len(), DeliveryCount: taken.deliveries - 1}, true, nil
	}
}

func (q *classicQueue) touch(ids []uint64) {
	q.mu.Lock()
	now := q.now()
	for _, id := range ids {
		if e, ok := q.unacked[id]; ok {
			e.deliveredAt = now
			q.unacked[id] = e
		}
	}
	q.mu.Unlock()
}

func (q *classicQueue) settle(ids []uint64, kind settleKind) {
	var wake [4]*Limiter
	wakes := wake[:0]
	q.mu.Lock()
	var last *Consumer
	var run int64
	flush := func() {
		if last != nil && run > 0 {
			if l := last.release(run); l != nil && !slices.Contains(wakes, l) {
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
			if !q.deleted {
				q.forgetLocked(&e.entry)
			}
		case settleRequeue:
			q.requeueLocked(e.entry)
		case settleDiscard:
			if !q.deleted {
				q.dropLocked(&e.entry, reasonRejected)
			}
		}
	}
	flush()
	if len(q.consumers) > 0 {
		q.dispatchLocked()
	}
	q.unlock()
	for _, l := range wakes {
		l.wake()
	}
}

func (q *classicQueue) requeueLocked(e entry) {
	if q.deleted {
		return
	}
	if q.cfg.deliveryLimit >= 0 && int64(e.deliveries) > q.cfg.deliveryLimit {
		q.dropLocked(&e, reasonDeliveryLimit)
		return
	}
	e.redelivered = true
	q.ready.pushRequeued(e)
}

// purge drops every ready message and returns how many.
func (q *classicQueue) purge() int {
	q.mu.Lock()
	q.forgetAllReadyLocked()
	n := q.ready.clear()
	q.timers.expiries = expiryWheel{}
	q.releaseFlowLocked()
	q.unlock()
	return n
}

// markDeleted empties the queue, cancels its consumers and returns the
// number of ready messages dropped. The vhost removes it from its maps.
func (q *classicQueue) markDeleted() (int, bool) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return 0, false
	}
	q.deleted = true
	n := q.ready.clear()
	q.stopTimersLocked()
	if q.persistent {
		q.storeLocked(store.Record{Kind: store.KindQueueDelete, QueueID: q.qid})
	}
	if q.tpaged {
		q.storeLocked(store.Record{Kind: store.KindQueueDelete, QueueID: q.tqid})
	}
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
	q.unlock()
	for _, c := range consumers {
		if c.limiter != nil {
			c.limiter.remove(c)
		}
	}
	return n, true
}

// releaseFlowLocked wakes waiting publishers once the backlog is low enough
// or nobody consumes any more.
func (q *classicQueue) releaseFlowLocked() {
	if q.flowWait != nil && (q.ready.len() <= flowLow || len(q.consumers) == 0 || q.deleted) {
		close(q.flowWait)
		q.flowWait = nil
	}
}

func (q *classicQueue) flowChan(owner Owner) <-chan struct{} {
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
