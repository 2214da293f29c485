package broker

import (
	"slices"
	"time"
)

// queueTimers are the only timers a queue owns: one for message expiry,
// one for x-expires (unused queue), one for the consumer timeout scan. An
// idle queue costs nothing per message: expiry wakes once for the earliest
// due message.
type queueTimers struct {
	// expiries holds messages whose own expiration makes them due before
	// messages queued ahead of them; queue-TTL expiry is monotonic per
	// priority level and is read off the heads.
	expiries expiryWheel
	expiry   *time.Timer
	expiryAt int64 // when expiry fires; 0 = not armed

	idle     *time.Timer
	lastUsed int64

	consumerTimeout      *time.Timer
	consumerTimeoutArmed bool
}

const expiryGranularity = 25 * time.Millisecond

type expiryItem struct {
	at  int64
	seq uint64
	pri uint8
}

// expiryWheel files messages with their own expiration by due time in
// buckets of expiryGranularity: filing and expiring a message is O(1) and
// walks memory in order, which matters with a million of them. A bucket's
// time is rounded up, so a message never expires early.
type expiryWheel struct {
	buckets map[int64][]expiryItem
	keys    []int64 // min-heap of bucket keys
	n       int
}

func (w *expiryWheel) Len() int { return w.n }

func (w *expiryWheel) push(it expiryItem) {
	g := int64(expiryGranularity)
	k := (it.at + g - 1) / g
	if w.buckets == nil {
		w.buckets = make(map[int64][]expiryItem)
	}
	b, ok := w.buckets[k]
	if !ok {
		w.keys = append(w.keys, k)
		for i := len(w.keys) - 1; i > 0; {
			p := (i - 1) / 2
			if w.keys[p] <= w.keys[i] {
				break
			}
			w.keys[p], w.keys[i] = w.keys[i], w.keys[p]
			i = p
		}
	}
	w.buckets[k] = append(b, it)
	w.n++
}

// next is when the earliest bucket is due, or 0.
func (w *expiryWheel) next() int64 {
	if len(w.keys) == 0 {
		return 0
	}
	return w.keys[0] * int64(expiryGranularity)
}

// popDue calls fn for every item in buckets due by now.
func (w *expiryWheel) popDue(now int64, fn func(expiryItem)) {
	for len(w.keys) > 0 && w.keys[0]*int64(expiryGranularity) <= now {
		k := w.keys[0]
		last := len(w.keys) - 1
		w.keys[0] = w.keys[last]
		w.keys = w.keys[:last]
		for i := 0; ; {
			l, r, m := 2*i+1, 2*i+2, i
			if l < len(w.keys) && w.keys[l] < w.keys[m] {
				m = l
			}
			if r < len(w.keys) && w.keys[r] < w.keys[m] {
				m = r
			}
			if m == i {
				break
			}
			w.keys[m], w.keys[i] = w.keys[i], w.keys[m]
			i = m
		}
		items := w.buckets[k]
		delete(w.buckets, k)
		w.n -= len(items)
		for _, it := range items {
			fn(it)
		}
	}
	if w.n == 0 {
		w.buckets, w.keys = nil, nil // give the memory back
	}
}

// trackExpiryLocked makes sure the expiry timer fires by e's due time.
func (q *classicQueue) trackExpiryLocked(e entry) {
	if e.ownExpiry {
		q.timers.expiries.push(expiryItem{at: e.expiresAt, seq: e.seq, pri: e.prio})
	}
	q.armExpiryLocked(e.expiresAt)
}

func (q *classicQueue) armExpiryLocked(at int64) {
	t := &q.timers
	if q.deleted || (t.expiryAt != 0 && t.expiryAt <= at) {
		return
	}
	// Expiry is batched: a due message waits at most expiryGranularity to
	// be removed (dispatch never hands out an expired one meanwhile), so a
	// million TTLs cost a few hundred timer wake-ups, not a million.
	d := time.Duration(at - q.now())
	if d < expiryGranularity {
		d = expiryGranularity
	}
	t.expiryAt = at
	if t.expiry == nil {
		t.expiry = time.AfterFunc(d, q.expireDue)
	} else {
		t.expiry.Reset(d)
	}
}

// expireDue runs on the expiry timer: it dead-letters every message that
// is due, then re-arms for the next one.
func (q *classicQueue) expireDue() {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	t := &q.timers
	t.expiryAt = 0
	now := q.now()
	t.expiries.popDue(now, func(it expiryItem) {
		if e, ok := q.ready.tombstone(it.seq, it.pri); ok {
			q.dropLocked(&e, reasonExpired)
		}
	})
	next := t.expiries.next()
	// Queue-TTL expiry: the heads of the levels are the oldest.
	for lvl := range q.ready.levels {
		ring := &q.ready.levels[lvl]
		for ring.Len() > 0 {
			e := ring.Front()
			if e.dead {
				ring.PopFront()
				continue
			}
			if e.expiresAt == 0 || e.ownExpiry {
				break
			}
			if e.expiresAt > now {
				if next == 0 || e.expiresAt < next {
					next = e.expiresAt
				}
				break
			}
			dead := q.ready.take(source(lvl))
			q.dropLocked(&dead, reasonExpired)
		}
	}
	q.ready.compact()
	if next != 0 {
		q.armExpiryLocked(next)
	}
	q.releaseFlowLocked()
	q.unlock()
}

// touchIdleLocked records a use of the queue and (re)arms x-expires.
func (q *classicQueue) touchIdleLocked() {
	t := &q.timers
	t.lastUsed = q.now()
	if q.cfg.expires <= 0 || q.deleted || len(q.consumers) > 0 {
		return
	}
	if t.idle == nil {
		t.idle = time.AfterFunc(q.cfg.expires, q.expireIdle)
	} else {
		t.idle.Reset(q.cfg.expires)
	}
}

func (q *classicQueue) stopIdleTimerLocked() {
	if q.timers.idle != nil {
		q.timers.idle.Stop()
	}
}

// expireIdle deletes a queue that went unused for x-expires.
func (q *classicQueue) expireIdle() {
	q.mu.Lock()
	unused := !q.deleted && len(q.consumers) == 0 && q.cfg.expires > 0 &&
		q.now()-q.timers.lastUsed >= int64(q.cfg.expires)-int64(time.Millisecond)
	q.mu.Unlock()
	if unused {
		q.vhost.broker.log.Debug("queue expired (x-expires)", "queue", q.name, "vhost", q.vhost.name)
		q.vhost.deleteQueue(q.Queue)
	}
}

// armConsumerTimeoutLocked starts the scan for deliveries that have been
// unacknowledged longer than the consumer timeout.
func (q *classicQueue) armConsumerTimeoutLocked() {
	t := &q.timers
	if t.consumerTimeoutArmed || q.deleted {
		return
	}
	t.consumerTimeoutArmed = true
	every := q.cfg.consumerTimeout / 5
	every = min(max(every, 20*time.Millisecond), 5*time.Second)
	if t.consumerTimeout == nil {
		t.consumerTimeout = time.AfterFunc(every, q.scanConsumerTimeout)
	} else {
		t.consumerTimeout.Reset(every)
	}
}

// scanConsumerTimeout returns overdue deliveries to the queue and tells
// their consumers (RabbitMQ closes the channel with 406).
func (q *classicQueue) scanConsumerTimeout() {
	q.mu.Lock()
	q.timers.consumerTimeoutArmed = false
	if q.deleted || q.cfg.consumerTimeout <= 0 {
		q.mu.Unlock()
		return
	}
	deadline := q.now() - int64(q.cfg.consumerTimeout)
	var overdue []uint64
	pending := false
	for id, e := range q.unacked {
		if e.consumer == nil || e.deliveredAt == 0 {
			continue
		}
		if e.deliveredAt <= deadline {
			overdue = append(overdue, id)
			if !slices.Contains(q.timedOut, e.consumer) {
				q.timedOut = append(q.timedOut, e.consumer)
			}
		} else {
			pending = true
		}
	}
	if pending {
		q.armConsumerTimeoutLocked()
	}
	q.mu.Unlock()
	if len(overdue) > 0 {
		q.vhost.broker.log.Info("consumer timed out; returning its deliveries to the queue", "queue", q.name, "vhost", q.vhost.name, "deliveries", len(overdue), "timeout", q.cfg.consumerTimeout)
		q.settle(overdue, settleRequeue) // unlock in settle sends the notices
	}
}

func (q *classicQueue) stopTimersLocked() {
	t := &q.timers
	for _, tm := range []*time.Timer{t.expiry, t.idle, t.consumerTimeout} {
		if tm != nil {
			tm.Stop()
		}
	}
	t.expiries = expiryWheel{}
	t.expiryAt = 0
}
