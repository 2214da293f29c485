package mqtt

import (
	"sync"

	"github.com/heraldmq/herald/internal/broker"
)

// acker settles the deliveries that inline writes settle without a
// PUBACK (QoS 0, expired, not matched): they cannot be acknowledged under
// the dispatching queue's lock, and a writer goroutine per connection just
// for that would cost what inline writes save. The acker is one goroutine
// per Handler, started when there is work and gone when there is none, so
// a fanout to many connections is settled in one go.
type acker struct {
	mu      sync.Mutex // guards below
	pending []ackerItem
	spare   []ackerItem
	running bool
	wg      sync.WaitGroup // the running goroutine, for Handler.Close

	// Owned by the running goroutine.
	acks  ackBatch
	kicks []*outbox
}

type ackerItem struct {
	o  *outbox
	fl inflight
}

func (a *acker) add(o *outbox, fls []inflight) {
	a.mu.Lock()
	for _, fl := range fls {
		a.pending = append(a.pending, ackerItem{o: o, fl: fl})
	}
	if !a.running {
		a.running = true
		a.wg.Add(1)
		go a.run()
	}
	a.mu.Unlock()
}

func (a *acker) run() {
	defer a.wg.Done()
	for {
		a.mu.Lock()
		batch := a.pending
		if len(batch) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		a.pending, a.spare = a.spare[:0], nil
		a.mu.Unlock()
		for _, it := range batch {
			a.acks.add(it.fl)
			// An outbox's items are consecutive (add): comparing with the
			// last one keeps a fanout to 15,000 connections linear (a
			// repeat would only kick twice, which is harmless).
			if n := len(a.kicks); n == 0 || a.kicks[n-1] != it.o {
				a.kicks = append(a.kicks, it.o)
			}
		}
		a.acks.flush()
		// The credit freed may let retained messages waiting for the
		// window go.
		for _, o := range a.kicks {
			if o.waitingCredit() {
				o.kickCredit()
			}
		}
		clear(a.kicks)
		a.kicks = a.kicks[:0]
		clear(batch)
		a.mu.Lock()
		a.spare = batch[:0]
		a.mu.Unlock()
	}
}

// ackBatch gathers deliveries to acknowledge, so that a burst of them costs
// one Queue.Ack (one lock, one dispatch) per queue instead of one each.
type ackBatch struct {
	pending []inflight
	ids     []uint64
	reg     *broker.Connection // counts client acks (the read loop's batch only)
}

// ackBatchMax bounds a batch: the queue gets its credit back in chunks
// even while the client keeps the read buffer full.
const ackBatchMax = 256

func (b *ackBatch) add(fl inflight) {
	if fl.queue != nil {
		b.pending = append(b.pending, fl)
	}
}

func (b *ackBatch) full() bool { return len(b.pending) >= ackBatchMax }

// flush acknowledges everything gathered, one Ack per queue.
func (b *ackBatch) flush() {
	rest := b.pending
	if len(rest) > 0 {
		b.reg.CountAck(len(rest))
	}
	if len(rest) > ackBatchMax {
		// The acker's batch of an inline fanout: one delivery for each of
		// up to tens of thousands of queues, each queue's consecutive.
		// Grouping runs keeps it linear where the partition below would
		// be quadratic.
		for len(rest) > 0 {
			q, n := rest[0].queue, 1
			for n < len(rest) && rest[n].queue == q {
				n++
			}
			ids := b.ids[:0]
			for _, fl := range rest[:n] {
				ids = append(ids, fl.id)
			}
			q.Ack(ids...)
			b.ids = ids[:0]
			rest = rest[n:]
		}
		clear(b.pending)
		b.pending = b.pending[:0]
		return
	}
	for len(rest) > 0 {
		q := rest[0].queue
		ids := b.ids[:0]
		others := rest[:0]
		for _, fl := range rest {
			if fl.queue == q {
				ids = append(ids, fl.id)
			} else {
				others = append(others, fl)
			}
		}
		q.Ack(ids...)
		b.ids = ids[:0]
		clear(rest[len(others):])
		rest = others
	}
	b.pending = b.pending[:0]
}
