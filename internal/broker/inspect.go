package broker

import (
	"sort"
)

// Inspection and repair of queues for operators (the management API and
// herald ctl): list consumers, look at ready messages without consuming
// them, drop one, and shovel messages from one queue to another (above
// all from a dead-letter queue back to where they came from).

// ConsumerInfo describes one consumer for listings.
type ConsumerInfo struct {
	Tag       string
	Queue     string
	VHost     string
	NoAck     bool // "ack_required" is its negation
	Exclusive bool
	Prefetch  int
	Priority  int64
	Unacked   int
	Owner     Owner // the connection's owner id; 0 for internal consumers
	Args      Table
}

// Consumers lists the queue's consumers in dispatch order (priority, then
// arrival).
func (q *Queue) Consumers() []ConsumerInfo {
	cs := q.kind.consumerList()
	out := make([]ConsumerInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, ConsumerInfo{Tag: c.tag, Queue: q.name, VHost: q.vhost.name, NoAck: c.noAck, Exclusive: c.exclusive,
			Prefetch: int(c.prefetch), Priority: c.priority, Unacked: c.Unacked(), Owner: c.owner, Args: c.args})
	}
	return out
}

// browsable is a kind whose ready messages operators can look at, delete
// one by one and move to another queue (the classic engine). A kind that
// is not browsable answers Peek with nothing and refuses the rest.
type browsable interface {
	peek(n int) []Delivery
	deleteMessage(id uint64) bool
	// moveOut leases up to n ready messages, passes each to move until it
	// fails, drops the moved ones and puts the rest back in place.
	moveOut(n int, move func(m *Message) error) (int, error)
}

// Peek returns up to n ready messages in the order they would be
// delivered, without taking them. Delivery.ID is the queue-local id that
// DeleteMessage accepts; Remaining is the ready count at the snapshot.
func (q *Queue) Peek(n int) []Delivery {
	if b, ok := q.kind.(browsable); ok && n > 0 {
		return b.peek(n)
	}
	return nil
}

// DeleteMessage drops the ready message id (as Peek reported it) for good,
// without dead-lettering it. It reports false if the message is no longer
// ready (delivered, expired, already gone).
func (q *Queue) DeleteMessage(id uint64) bool {
	b, ok := q.kind.(browsable)
	return ok && b.deleteMessage(id)
}

func (q *classicQueue) consumerList() []*Consumer {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*Consumer(nil), q.consumers...)
}

func (q *classicQueue) peek(n int) []Delivery {
	q.mu.Lock()
	out, paged := q.peekLocked(n)
	q.mu.Unlock()
	// Paged messages are read back from the log outside the lock.
	for i, id := range paged {
		if id != 0 && out[i].Message == nil {
			m, err := q.vhost.broker.loadPaged(id)
			if err != nil {
				m = &Message{Properties: Properties{Headers: Table{"x-herald-error": "cannot read the message from the log: " + err.Error()}}}
			}
			out[i].Message = m
		}
	}
	return out
}

// peekLocked snapshots up to n ready entries; paged[i] is the log id of
// out[i] when its body is on disk.
func (q *classicQueue) peekLocked(n int) (out []Delivery, paged []uint64) {
	total := q.ready.len()
	// Requeued entries go out first among equal priorities (see
	// readySet.peek); the heap is usually small, so sorting a copy is cheap.
	var req []entry
	for _, e := range q.ready.requeued {
		if !e.dead {
			req = append(req, e)
		}
	}
	sort.Slice(req, func(i, j int) bool { return before(&req[i], &req[j]) })
	out = make([]Delivery, 0, min(n, total))
	paged = make([]uint64, 0, min(n, total))
	add := func(e *entry) bool {
		out = append(out, Delivery{Message: e.msg, Queue: q.Queue, ID: e.seq, Redelivered: e.redelivered, Remaining: total, DeliveryCount: e.deliveries})
		id := uint64(0)
		if e.msg == nil {
			id = e.storeID
		}
		paged = append(paged, id)
		return len(out) < n
	}
	ri := 0
	for lvl := len(q.ready.levels) - 1; lvl >= 0; lvl-- {
		for ; ri < len(req) && int(req[ri].prio) >= lvl; ri++ {
			if !add(&req[ri]) {
				return out, paged
			}
		}
		ring := &q.ready.levels[lvl]
		for i := 0; i < ring.Len(); i++ {
			if e := ring.At(i); !e.dead && !add(e) {
				return out, paged
			}
		}
	}
	for ; ri < len(req); ri++ {
		if !add(&req[ri]) {
			break
		}
	}
	return out, paged
}

func (q *classicQueue) deleteMessage(id uint64) bool {
	q.mu.Lock()
	e, ok := q.removeReadyLocked(id)
	if ok {
		q.forgetLocked(&e)
		q.ready.compact()
		q.releaseFlowLocked()
	}
	q.unlock()
	return ok
}

// removeReadyLocked takes the ready entry seq out of the queue, wherever
// it waits: tombstoned in place in its level (as expiry does), or marked
// dead in the requeued heap (peek pops dead heap entries).
func (q *classicQueue) removeReadyLocked(seq uint64) (entry, bool) {
	for i := range q.ready.requeued {
		if p := &q.ready.requeued[i]; p.seq == seq && !p.dead {
			return q.ready.bury(p, seq)
		}
	}
	for lvl := range q.ready.levels {
		if e, ok := q.ready.tombstone(seq, uint8(lvl)); ok {
			return e, true
		}
	}
	return entry{}, false
}

// leaseReadyLocked moves up to n ready messages into the unacked set
// without a consumer, so that no consumer takes them while they are being
// moved. Expired ones are dropped on the way, as delivery would.
func (q *classicQueue) leaseReadyLocked(n int) []entry {
	var out []entry
	now := q.now()
	for len(out) < n {
		e, src := q.ready.peek()
		if e == nil {
			break
		}
		if e.expiresAt != 0 && e.expiresAt <= now {
			dead := q.ready.take(src)
			q.dropLocked(&dead, reasonExpired)
			continue
		}
		taken := q.ready.take(src)
		q.unacked[taken.seq] = held{entry: taken}
		out = append(out, taken)
	}
	return out
}

// MoveMessages takes up to n ready messages from the queue from and
// publishes them to the queue to through the default exchange, keeping
// their properties and headers (x-death included); persistent messages
// stay persistent and are logged in the target like any publish. A
// message leaves the source only once the target has enqueued it, so a
// crash in between duplicates rather than loses. It stops at the first
// message the target refuses (deleted, or full with reject-publish) and
// puts that one and the rest back where they were.
func (v *VHost) MoveMessages(from, to string, n int) (int, error) {
	if from == to {
		return 0, errorf(CodePreconditionFailed, "cannot move messages from queue '%s' to itself", from)
	}
	src, err := v.Queue(from)
	if err != nil {
		return 0, err
	}
	if _, err := v.Queue(to); err != nil {
		return 0, err
	}
	b, ok := src.kind.(browsable)
	if !ok {
		return 0, errorf(CodePreconditionFailed, "cannot move messages out of %s queue '%s'", src.qtype, from)
	}
	if n <= 0 {
		return 0, nil
	}
	p := v.Publisher()
	moved, err := b.moveOut(n, func(m *Message) error {
		props := m.Properties
		if props.Headers != nil {
			h := make(Table, len(props.Headers))
			for k, val := range props.Headers {
				h[k] = val
			}
			props.Headers = h
		}
		routed, err := p.Publish(&Message{Exchange: "", RoutingKey: to, Properties: props, Body: m.Body})
		if err == nil && (routed == 0 || p.Rejected()) {
			err = errorf(CodePreconditionFailed, "queue '%s' in vhost '%s' refused the message (gone, or full with overflow reject-publish)", to, v.name)
		}
		return err
	})
	if moved > 0 {
		v.broker.log.Info("messages moved", "vhost", v.name, "from", from, "to", to, "moved", moved)
	}
	return moved, err
}

func (q *classicQueue) moveOut(n int, move func(m *Message) error) (int, error) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return 0, q.notFound()
	}
	leased := q.leaseReadyLocked(n)
	q.unlock()

	moved := 0
	var perr error
	for _, e := range leased {
		m := e.msg
		if m == nil { // paged: read it back from the log
			if m, perr = q.vhost.broker.loadPaged(e.storeID); perr != nil {
				break
			}
		}
		if perr = move(m); perr != nil {
			break
		}
		moved++
	}
	q.mu.Lock()
	for i, e := range leased {
		delete(q.unacked, e.seq)
		if i < moved {
			if !q.deleted {
				q.forgetLocked(&e)
			}
			continue
		}
		if !q.deleted {
			q.ready.pushRequeued(e) // back in its original place, flags unchanged
		}
	}
	q.releaseFlowLocked()
	if len(q.consumers) > 0 {
		q.dispatchLocked()
	}
	q.unlock()
	return moved, perr
}
