package broker

import (
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/streamlog"
)

// Consuming a stream. Every consumer belongs to a reading group with one
// streamlog reader and one goroutine: an anonymous consumer is a group of
// one; consumers sharing an x-stream-consumer name share a group, which
// hands each message to one member with credit, round-robin. Reading is
// not destructive: every group sees every message.
//
// Credit is the classic Consumer.acquire/release (basic.qos prefetch);
// settling only returns it, except in a named group, where:
//   - the group's stored position (streamlog.StoreOffset) follows its
//     acks: the lowest offset delivered and not yet acked, or the offset
//     after the last acked when nothing is outstanding; a consumer coming
//     back with the same name and no x-stream-offset resumes there;
//   - a requeue (basic.nack/reject with requeue) hands the message to a
//     member again, and so does a member leaving with deliveries unacked
//     while others remain.

// streamGroup is one reader of a stream and the consumers it feeds.
type streamGroup struct {
	q    *streamQueue
	name string            // x-stream-consumer; "" = anonymous
	spec streamConsumeSpec // the first member's filters
	kick chan struct{}     // capacity 1: credit, room or work arrived
	stop chan struct{}     // closed when the last member leaves

	// attention: a seek or a redelivery is queued (read without the lock
	// on every record).
	attention atomic.Bool

	// soon wakes the group a little later (wakeSoon): credit came back,
	// but too little to be worth a wake of its own.
	soon      *time.Timer
	soonArmed atomic.Bool

	// Guarded by q.mu.
	members     []*Consumer
	rr          int
	stopped     bool
	outstanding map[uint64]struct{} // offsets delivered (or due again) and not settled
	// order holds the outstanding offsets (and settled ones not yet
	// skipped) in increasing order from orderHead, so that the lowest
	// is found without sorting the map on every ack.
	order     []uint64
	orderHead int
	redeliver []streamHeld // by offset
	maxAcked  uint64
	hasAcked  bool
	stored    uint64 // the position last stored for a named group
	hasStored bool
	seekTo    *uint64 // set by SetStreamOffset for a running group
	gen       uint64  // bumped by SetStreamOffset: older deliveries no longer move the position
	// next is the offset after the last message delivered (where the
	// reader started, before the first): what the console shows as the
	// group's position.
	next uint64
}

func (q *streamQueue) consume(c *Consumer) error {
	if c.prefetch <= 0 {
		return errorf(CodePreconditionFailed, "consumer prefetch count is not set for stream queue '%s' in vhost '%s'", q.name, q.vhost.name)
	}
	if c.noAck {
		return errorf(CodeNotImplemented, "automatic acknowledgement not supported by stream queue '%s' in vhost '%s'", q.name, q.vhost.name)
	}
	spec, err := parseStreamConsumeArgs(c.args, q.vhost.broker.now())
	if err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return q.notFound()
	}
	if c.limiter != nil {
		c.limiter.add(c)
	}
	q.consumers = append(q.consumers, c)
	if g, ok := q.groups[spec.name]; ok && spec.name != "" {
		g.members = append(g.members, c)
		q.groupOf[c] = g
		g.wake()
		return nil
	}
	start := streamlog.Next()
	g := &streamGroup{q: q, name: spec.name, spec: spec, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		outstanding: make(map[uint64]struct{}), members: []*Consumer{c}}
	g.soon = time.AfterFunc(time.Hour, func() {
		g.soonArmed.Store(false)
		g.wake()
	})
	g.soon.Stop()
	switch {
	case spec.hasStart:
		start = spec.start
	case spec.name != "":
		if off, ok := q.log.Offset(spec.name); ok {
			start = streamlog.AtOffset(off)
			g.stored, g.hasStored = off, true
		}
	}
	r, err := q.log.NewReader(start)
	if err != nil {
		q.consumers = q.consumers[:len(q.consumers)-1]
		if c.limiter != nil {
			c.limiter.remove(c)
		}
		return errorf(CodeInternal, "cannot read %v: %v", q, err)
	}
	if spec.name != "" {
		q.groups[spec.name] = g
	}
	g.next = r.Offset()
	q.all = append(q.all, g)
	q.groupOf[c] = g
	q.wg.Add(1)
	go g.run(r)
	return nil
}

// wake makes the group's goroutine look again (credit, room, work).
func (g *streamGroup) wake() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// refillDelay is how long credit below refillThreshold waits for more
// before the group is woken anyway: a consumer that keeps most of its
// prefetch unacknowledged still gets what its credit allows.
const refillDelay = time.Millisecond

// refillLocked wakes the group after acks returned credit. A consumer that
// acks every message (and a replay fills its prefetch at once) would
// otherwise wake the reader once per ack to deliver one message: now the
// wake waits until a member has a quarter of its prefetch free, so one
// wake delivers many, or refillDelay has passed. Under q.mu.
func (g *streamGroup) refillLocked() {
	for _, c := range g.members {
		if c.limiter != nil || c.prefetch < 16 || c.prefetch-c.unacked.Load() >= c.prefetch/4 {
			g.wake()
			return
		}
	}
	g.wakeSoon()
}

// wakeSoon wakes the group after refillDelay unless a wake is due already.
func (g *streamGroup) wakeSoon() {
	if g.soonArmed.CompareAndSwap(false, true) {
		g.soon.Reset(refillDelay)
	}
}

// dispatch: a sink has room again or a shared limiter freed credit.
func (q *streamQueue) dispatch() {
	q.mu.Lock()
	for _, g := range q.all {
		g.wake()
	}
	q.mu.Unlock()
}

// run reads the group's records and delivers them until the group or the
// stream stops. Disk reads happen without the stream's lock.
func (g *streamGroup) run(r *streamlog.Reader) {
	q := g.q
	defer q.wg.Done()
	defer func() { r.Close() }()
	defer g.soon.Stop()
	var pend *streamHeld // read, not yet delivered
	wait := func(changed <-chan struct{}) bool {
		select {
		case <-changed:
		case <-g.kick:
		case <-g.stop:
			return false
		case <-q.stop:
			return false
		}
		return true
	}
	for {
		if g.attention.Load() {
			q.mu.Lock()
			g.attention.Store(false)
			if g.seekTo != nil {
				off := *g.seekTo
				g.seekTo = nil
				q.mu.Unlock()
				r.Close()
				var err error
				if r, err = q.log.NewReader(streamlog.AtOffset(off)); err != nil {
					q.vhost.broker.log.Error("cannot reposition a stream reader", "stream", q.name, "consumer", g.name, "err", err)
					return
				}
				pend = nil
				continue
			}
			if pend == nil && len(g.redeliver) > 0 {
				h := g.redeliver[0]
				g.redeliver = g.redeliver[1:]
				pend = &h
			}
			if len(g.redeliver) > 0 {
				g.attention.Store(true)
			}
			q.mu.Unlock()
		}
		if pend == nil {
			changed := q.log.Changed()
			off, _, rec, err := r.Next()
			switch {
			case err == nil:
				m, derr := decodeStreamRecord(rec)
				if derr != nil {
					q.vhost.broker.log.Error("unreadable stream record skipped", "stream", q.name, "offset", off, "err", derr)
					continue
				}
				if !g.spec.matches(m) {
					continue
				}
				if m.Properties.Headers == nil {
					m.Properties.Headers = Table{}
				}
				m.Properties.Headers["x-stream-offset"] = int64(off)
				pend = &streamHeld{g: g, off: off, m: m}
			case errors.Is(err, streamlog.ErrCaughtUp):
				if !wait(changed) {
					return
				}
				continue
			default:
				if !errors.Is(err, streamlog.ErrClosed) {
					q.vhost.broker.log.Error("stream read failed", "stream", q.name, "err", err)
				}
				if !wait(nil) {
					return
				}
				continue
			}
		}
		if g.deliver(pend) {
			pend = nil
			continue
		}
		if !wait(nil) {
			return
		}
	}
}

// deliver offers h to the members, round-robin, and reports whether one
// took it.
func (g *streamGroup) deliver(h *streamHeld) bool {
	q := g.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted || g.stopped || g.seekTo != nil {
		return false // a seek is due first (run handles it)
	}
	n := len(g.members)
	for i := range n {
		idx := (g.rr + i) % n
		c := g.members[idx]
		if !c.acquire() {
			continue
		}
		q.nextID++
		id := q.nextID
		if !c.sink.Deliver(Delivery{Message: h.m, Queue: q.Queue, ID: id, Redelivered: h.redelivered, Consumer: c}) {
			c.unacquire()
			continue
		}
		h.c, h.gen = c, g.gen
		held := *h
		if g.name == "" {
			// An anonymous group never delivers a message again and keeps
			// no position: the ack needs only the credit to return.
			held.m = nil
		} else if _, ok := g.outstanding[h.off]; !ok {
			g.outstanding[h.off] = struct{}{}
			g.noteOutstandingLocked(h.off)
		}
		q.unacked[id] = held
		g.next = max(g.next, h.off+1)
		q.delivered.Add(1)
		g.rr = idx + 1
		return true
	}
	return false
}

// settle returns credit; in a named group it also moves the stored
// position (acks, rejects) or queues the message again (requeue).
func (q *streamQueue) settle(ids []uint64, how settleKind) {
	var wakes []*Limiter
	var touched []*streamGroup
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
		h, ok := q.unacked[id]
		if !ok {
			continue
		}
		delete(q.unacked, id)
		if h.c != last {
			flush()
			last, run = h.c, 0
		}
		run++
		g := h.g
		if !slices.Contains(touched, g) {
			touched = append(touched, g) // woken below: the credit is back
		}
		if h.gen != g.gen {
			continue // delivered before SetStreamOffset moved the group: credit only
		}
		switch {
		case how == settleRequeue && g.name != "":
			if !g.stopped {
				g.queueRedeliveryLocked(h)
			}
			// A stopped group keeps it outstanding: its position stays before it.
		default:
			if how == settleAck {
				q.acked.Add(1)
			}
			if g.name != "" {
				delete(g.outstanding, h.off)
			}
			if !g.hasAcked || h.off > g.maxAcked {
				g.maxAcked, g.hasAcked = h.off, true
			}
		}
	}
	flush()
	for _, g := range touched {
		g.storePositionLocked()
		if how == settleRequeue && g.name != "" {
			g.wake() // redeliveries are due
		} else {
			g.refillLocked()
		}
	}
	q.mu.Unlock()
	for _, l := range wakes {
		l.wake()
	}
}

// queueRedeliveryLocked queues h to be delivered to a member again; it
// stays outstanding, so the stored position stays before it.
func (g *streamGroup) queueRedeliveryLocked(h streamHeld) {
	h.c, h.redelivered = nil, true
	i, _ := slices.BinarySearchFunc(g.redeliver, h.off, func(x streamHeld, off uint64) int {
		switch {
		case x.off < off:
			return -1
		case x.off > off:
			return 1
		}
		return 0
	})
	g.redeliver = slices.Insert(g.redeliver, i, h)
	g.attention.Store(true)
}

// positionLocked is where a named group resumes: its lowest outstanding
// offset, or the offset after its last ack.
func (g *streamGroup) positionLocked() (uint64, bool) {
	if len(g.outstanding) > 0 {
		for g.orderHead < len(g.order) {
			off := g.order[g.orderHead]
			if _, ok := g.outstanding[off]; ok {
				g.compactOrderLocked()
				return off, true
			}
			g.orderHead++
		}
		// Not reached: every outstanding offset is in order.
		return slices.Min(slices.Collect(maps.Keys(g.outstanding))), true
	}
	g.order, g.orderHead = g.order[:0], 0
	if g.hasAcked {
		return g.maxAcked + 1, true
	}
	return 0, false
}

// noteOutstandingLocked adds off to order: at the end, as the reader
// delivers in offset order.
func (g *streamGroup) noteOutstandingLocked(off uint64) {
	if n := len(g.order); n == g.orderHead || g.order[n-1] < off {
		g.order = append(g.order, off)
		return
	}
	i, _ := slices.BinarySearch(g.order[g.orderHead:], off)
	g.order = slices.Insert(g.order, g.orderHead+i, off)
}

// compactOrderLocked drops the skipped front of order now and then.
func (g *streamGroup) compactOrderLocked() {
	if g.orderHead >= 1024 && 2*g.orderHead >= len(g.order) {
		n := copy(g.order, g.order[g.orderHead:])
		g.order, g.orderHead = g.order[:n], 0
	}
}

// storePositionLocked stores a named group's position durably when it
// moved (asynchronously: the stream's committer shares the fsync with its
// appends). A stopped group whose name another group took stores nothing.
func (g *streamGroup) storePositionLocked() {
	q := g.q
	if g.name == "" || q.deleted {
		return
	}
	if cur, ok := q.groups[g.name]; ok && cur != g {
		return
	}
	pos, ok := g.positionLocked()
	if !ok || (g.hasStored && pos == g.stored) {
		return
	}
	g.stored, g.hasStored = pos, true
	name := g.name
	q.log.StoreOffsetAsync(name, pos, func(err error) {
		if err != nil {
			q.vhost.broker.log.Error("cannot store a stream consumer's position", "stream", q.name, "consumer", name, "err", err)
		}
	})
}

// removeConsumer detaches c. In a named group with other members its
// unacked deliveries go to them; the last member leaving stops the group
// (its unacked deliveries stay ackable, and their acks still move the
// stored position).
func (q *streamQueue) removeConsumer(c *Consumer) {
	if c.cancelled.Swap(true) {
		return
	}
	if c.limiter != nil {
		c.limiter.remove(c)
	}
	var released int64
	q.mu.Lock()
	if i := slices.Index(q.consumers, c); i >= 0 {
		q.consumers = slices.Delete(q.consumers, i, i+1)
	}
	g := q.groupOf[c]
	delete(q.groupOf, c)
	if g == nil {
		q.mu.Unlock()
		return
	}
	if i := slices.Index(g.members, c); i >= 0 {
		g.members = slices.Delete(g.members, i, i+1)
	}
	if len(g.members) > 0 {
		if g.name != "" {
			for id, h := range q.unacked {
				if h.c == c && h.g == g {
					delete(q.unacked, id)
					g.queueRedeliveryLocked(h)
					released++
				}
			}
		}
		g.wake()
	} else {
		g.stopped = true
		close(g.stop)
		if i := slices.Index(q.all, g); i >= 0 {
			q.all = slices.Delete(q.all, i, i+1)
		}
		if g.name != "" && q.groups[g.name] == g {
			delete(q.groups, g.name)
		}
	}
	q.mu.Unlock()
	if released > 0 {
		if l := c.release(released); l != nil {
			l.wake()
		}
	}
}
