package broker

import (
	"container/heap"
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
	expiries expiryHeap
	expiry   *time.Timer
	expiryAt int64 // when expiry fires; 0 = not armed

	idle     *time.Timer
	lastUsed int64

	consumerTimeout      *time.Timer
	consumerTimeoutArmed bool
}

type expiryItem struct {
	at  int64
	seq uint64
	pri uint8
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// trackExpiryLocked makes sure the expiry timer fires by e's due time.
func (q *Queue) trackExpiryLocked(e entry) {
	if e.ownExpiry {
		heap.Push(&q.timers.expiries, expiryItem{at: e.expiresAt, seq: e.seq, pri: e.prio})
	}
	q.armExpiryLocked(e.expiresAt)
}

func (q *Queue) armExpiryLocked(at int64) {
	t := &q.timers
	if q.deleted || (t.expiryAt != 0 && t.expiryAt <= at) {
		return
	}
	d := time.Duration(at - q.now())
	if d < time.Millisecond {
		d = time.Millisecond
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
func (q *Queue) expireDue() {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	t := &q.timers
	t.expiryAt = 0
	now := q.now()
	for t.expiries.Len() > 0 && t.expiries[0].at <= now {
		it := heap.Pop(&t.expiries).(expiryItem)
		if e, ok := q.ready.tombstone(it.seq, it.pri); ok {
			q.deadLetterLocked(e.msg, reasonExpired)
		}
	}
	next := int64(0)
	if t.expiries.Len() > 0 {
		next = t.expiries[0].at
	}
	// Queue-TTL expiry: the heads of the levels are the oldest.
	for lvl := range q.ready.levels {
		ring := &q.ready.levels[lvl]
		for ring.Len() > 0 {
			e := ring.Front()
			if e.msg == nil {
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
			q.deadLetterLocked(dead.msg, reasonExpired)
		}
	}
	if next != 0 {
		q.armExpiryLocked(next)
	}
	q.releaseFlowLocked()
	q.unlock()
}

// touchIdleLocked records a use of the queue and (re)arms x-expires.
func (q *Queue) touchIdleLocked() {
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

func (q *Queue) stopIdleTimerLocked() {
	if q.timers.idle != nil {
		q.timers.idle.Stop()
	}
}

// expireIdle deletes a queue that went unused for x-expires.
func (q *Queue) expireIdle() {
	q.mu.Lock()
	unused := !q.deleted && len(q.consumers) == 0 && q.cfg.expires > 0 &&
		q.now()-q.timers.lastUsed >= int64(q.cfg.expires)-int64(time.Millisecond)
	q.mu.Unlock()
	if unused {
		q.vhost.broker.log.Debug("queue expired (x-expires)", "queue", q.name, "vhost", q.vhost.name)
		q.vhost.deleteQueue(q)
	}
}

// armConsumerTimeoutLocked starts the scan for deliveries that have been
// unacknowledged longer than the consumer timeout.
func (q *Queue) armConsumerTimeoutLocked() {
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
func (q *Queue) scanConsumerTimeout() {
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
			if !containsConsumer(q.timedOut, e.consumer) {
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

func containsConsumer(cs []*Consumer, c *Consumer) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

func (q *Queue) stopTimersLocked() {
	t := &q.timers
	for _, tm := range []*time.Timer{t.expiry, t.idle, t.consumerTimeout} {
		if tm != nil {
			tm.Stop()
		}
	}
	t.expiries = nil
	t.expiryAt = 0
}
