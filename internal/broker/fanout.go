package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A message for many queues may be enqueued by two goroutines. An enqueue
// that hands the message to a consumer may write it to a socket (MQTT
// writes to an idle subscriber inline), so one message for hundreds of
// subscribers can cost hundreds of writes, one after the other. When the
// first fanoutChunk queues of a large fanout took at least fanoutSlow, a
// helper goroutine joins in: both claim chunks of the remaining queues
// from one counter. With a core free that halves the time the last
// subscriber waits; with none the helper finds little or nothing left to
// claim. Cheap fanouts (deliveries only queued for writer goroutines)
// never pay for the helper.
const (
	parallelFanout = 4 * fanoutChunk
	fanoutChunk    = 8
	fanoutSlow     = 8 * time.Microsecond
)

// fanoutTask is the rest of one message's fanout, shared by the publisher
// and a helper. The publisher waits only for chunks the helper claimed and
// has not finished.
type fanoutTask struct {
	m   *Message
	exp int64
	qs  []*Queue

	next     atomic.Int64
	finished atomic.Int64
	done     chan struct{} // closed by whoever finishes the last queue

	enqueued atomic.Int64
	rejected atomic.Bool
	stored   atomic.Bool

	mu        sync.Mutex // guards congested
	congested []*Queue
}

// work enqueues claimed chunks until none are left.
func (t *fanoutTask) work() {
	n := int64(len(t.qs))
	for {
		from := t.next.Add(fanoutChunk) - fanoutChunk
		if from >= n {
			return
		}
		to := min(from+fanoutChunk, n)
		var enqueued int64
		for _, q := range t.qs[from:to] {
			ok, rejected, congested, stored := q.enqueue(t.m, t.exp)
			if ok {
				enqueued++
			}
			if rejected {
				t.rejected.Store(true)
			}
			if stored {
				t.stored.Store(true)
			}
			if congested {
				t.mu.Lock()
				if !slices.Contains(t.congested, q) {
					t.congested = append(t.congested, q)
				}
				t.mu.Unlock()
			}
		}
		t.enqueued.Add(enqueued)
		if t.finished.Add(to-from) == n {
			close(t.done)
		}
	}
}

// enqueueAll enqueues m in every queue of qs (see fanoutSlow) and reports
// how many took it and whether any wrote it to the log.
func (p *Publisher) enqueueAll(m *Message, exp int64, qs []*Queue) (n int, anyStored bool) {
	b := p.vhost.broker
	var start time.Time
	if len(qs) >= parallelFanout && b.parallel {
		start = b.now()
	}
	for i, q := range qs {
		if i == fanoutChunk && !start.IsZero() && b.now().Sub(start) >= fanoutSlow {
			k, stored := p.enqueueParallel(m, exp, qs[i:])
			return n + k, anyStored || stored
		}
		ok, rejected, congested, stored := q.enqueue(m, exp)
		if ok {
			n++
		}
		if rejected {
			p.rejected = true
		}
		anyStored = anyStored || stored
		if congested && !slices.Contains(p.congested, q) {
			p.congested = append(p.congested, q)
		}
	}
	return n, anyStored
}

// enqueueParallel enqueues m in qs together with a helper goroutine and
// waits until every queue has it. The helper never blocks: once nothing is
// left to claim it returns, so it does not outlive the task by more than
// its last enqueue.
func (p *Publisher) enqueueParallel(m *Message, exp int64, qs []*Queue) (n int, anyStored bool) {
	t := &fanoutTask{m: m, exp: exp, qs: qs, done: make(chan struct{})}
	go t.work()
	t.work()
	<-t.done
	if t.rejected.Load() {
		p.rejected = true
	}
	for _, q := range t.congested {
		if !slices.Contains(p.congested, q) {
			p.congested = append(p.congested, q)
		}
	}
	return int(t.enqueued.Load()), t.stored.Load()
}
