package broker

import (
	"container/heap"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

// KindDelayed is the exchange type of RabbitMQ's popular delayed-message
// plugin: a message with header x-delay (milliseconds) is held by the
// exchange and routed, by the type named in the x-delayed-type argument,
// once it is due.
const KindDelayed = "x-delayed-message"

// delayQueue holds an exchange's delayed messages in due order.
type delayQueue struct {
	mu      sync.Mutex
	items   delayHeap
	seq     uint64
	timer   *time.Timer
	at      int64 // when the timer fires; 0 = not armed
	stopped bool
}

type delayedMessage struct {
	at      int64
	seq     uint64 // FIFO among messages due at the same instant
	msg     *Message
	storeID uint64 // its entry in the log (persistent, durable exchange); 0 = none
}

type delayHeap []delayedMessage

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h delayHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)   { *h = append(*h, x.(delayedMessage)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = delayedMessage{}
	*h = old[:len(old)-1]
	return x
}

// delayOf returns the x-delay of m, if positive.
func delayOf(m *Message) (time.Duration, bool) {
	n, ok := asInt(m.Properties.Headers["x-delay"])
	if !ok || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Millisecond, true
}

// schedule holds m until delay has passed. A persistent message held by a
// durable exchange is written to the log (as an entry of the exchange's
// own pseudo-queue whose sequence is the due time), so it survives a
// restart and is delivered on time after it; stored reports that.
func (e *Exchange) schedule(m *Message, delay time.Duration) (stored bool) {
	b := e.vhost.broker
	now := b.steadyNano()
	at := now + int64(delay)
	var id uint64
	if b.store != nil && m.Persistent() && e.durable {
		id = b.nextMsgID.Add(1)
		b.store.AppendFunc([]store.Record{
			{Kind: store.KindMessage, MessageID: id, Meta: encodeMeta(m), Body: m.Body},
			{Kind: store.KindEnqueue, QueueID: e.delayQueueID(), MessageID: id, Seq: uint64(at)},
		}, noop)
	}
	e.hold(m, at, id, now)
	return id != 0
}

// hold puts m in the due-time heap.
func (e *Exchange) hold(m *Message, at int64, storeID uint64, now int64) {
	d := &e.delays
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	d.seq++
	heap.Push(&d.items, delayedMessage{at: at, seq: d.seq, msg: m, storeID: storeID})
	e.armDelayLocked(at, now)
}

// delayQueueID names the exchange's delayed messages in the log.
func (e *Exchange) delayQueueID() uint64 {
	return queueID(e.vhost.name, "\x00x-delayed-message:"+e.name)
}

func (e *Exchange) armDelayLocked(at, now int64) {
	d := &e.delays
	if d.at != 0 && d.at <= at {
		return
	}
	wait := time.Duration(at - now)
	if wait < 0 {
		wait = 0
	}
	d.at = at
	if d.timer == nil {
		d.timer = time.AfterFunc(wait, e.releaseDue)
	} else {
		d.timer.Reset(wait)
	}
}

// releaseDue routes every message whose delay has passed.
func (e *Exchange) releaseDue() {
	d := &e.delays
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return
	}
	d.at = 0
	now := e.vhost.broker.steadyNano()
	var due []delayedMessage
	for d.items.Len() > 0 && d.items[0].at <= now {
		due = append(due, heap.Pop(&d.items).(delayedMessage))
	}
	if d.items.Len() > 0 {
		e.armDelayLocked(d.items[0].at, now)
	}
	d.mu.Unlock()
	if len(due) == 0 {
		return
	}
	p := e.vhost.Publisher()
	b := e.vhost.broker
	for _, dm := range due {
		p.publishFrom(e, dm.msg)
		if dm.storeID != 0 {
			// Routed (and, into durable queues, logged as a new message):
			// the held copy can go.
			b.store.AppendFunc([]store.Record{{Kind: store.KindAck, QueueID: e.delayQueueID(), MessageID: dm.storeID}}, noop)
		}
	}
}

// DelayedCount is the number of messages the exchange is holding.
func (e *Exchange) DelayedCount() int {
	e.delays.mu.Lock()
	defer e.delays.mu.Unlock()
	return e.delays.items.Len()
}

func (e *Exchange) stopDelayed() {
	d := &e.delays
	d.mu.Lock()
	d.stopped = true
	if d.timer != nil {
		d.timer.Stop()
	}
	d.items = nil
	d.mu.Unlock()
}
