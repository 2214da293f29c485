package broker

import (
	"errors"

	"github.com/heraldmq/herald/internal/store"
)

// Paging: a durable queue keeps at most MemoryMessages stored messages in
// RAM; beyond that, a persistent message's entry keeps only its place (seq,
// size, priority, expiry, log id) and the body stays in the log. Before a
// paged entry reaches the head, the queue's page-in worker reads it back
// (outside the queue's lock: no I/O under a lock). Dispatch stops at a
// paged head and resumes when the worker has attached its message.

// DefaultMemoryMessages is the default per-queue budget of messages kept in
// RAM when they are also on disk.
const DefaultMemoryMessages = 20000

// pageInBatch bounds how many messages one page-in round reads.
const pageInBatch = 512

func (q *classicQueue) memoryBudget() int {
	if n := q.vhost.broker.memoryMessages; n > 0 {
		return n
	}
	return DefaultMemoryMessages
}

// shouldPageLocked reports whether a new stored entry should leave its body
// on disk: the queue already holds its budget of messages in RAM.
func (q *classicQueue) shouldPageLocked(e *entry) bool {
	return e.storeID != 0 && q.ready.inMemory >= q.memoryBudget()
}

// overBudgetLocked reports whether the queue already holds its budget of
// messages in RAM.
func (q *classicQueue) overBudgetLocked() bool {
	return q.vhost.broker.store != nil && q.ready.inMemory >= q.memoryBudget()
}

// pageTransientLocked writes a transient message that overflows the budget
// to the log (under the queue's transient id, which recovery discards:
// transient messages do not survive a restart) and leaves only its place
// in memory, so a deep transient queue is bounded by disk, not RAM too.
func (q *classicQueue) pageTransientLocked(e *entry, m *Message) {
	b := q.vhost.broker
	id := b.nextMsgID.Add(1)
	q.storeLocked(
		store.Record{Kind: store.KindMessage, MessageID: id, Meta: encodeMeta(m), Body: m.Body},
		store.Record{Kind: store.KindEnqueue, QueueID: q.tqid, MessageID: id, Seq: e.seq},
	)
	e.storeID, e.transient, e.msg = id, true, nil
	q.tpaged = true
}

// logQueueID is the log's queue id for e's record.
func (q *classicQueue) logQueueID(e *entry) uint64 {
	if e.transient {
		return q.tqid
	}
	return q.qid
}

// pagedLocked is the number of ready entries whose body is on disk.
func (q *classicQueue) pagedLocked() int { return q.ready.live - q.ready.inMemory }

// maybePageInLocked starts the page-in worker when paged entries exist and
// the in-RAM window has shrunk to half the budget (so that consumers do not
// wait for the disk), or when force is set (a paged entry is at the head).
func (q *classicQueue) maybePageInLocked(force bool) {
	if q.pagingIn || q.deleted || q.pagedLocked() == 0 {
		return
	}
	if !force && q.ready.inMemory > q.memoryBudget()/2 {
		return
	}
	q.pagingIn = true
	go q.pageIn()
}

type pageRef struct {
	seq     uint64
	prio    uint8
	storeID uint64
}

// pageIn reads paged messages back from the log, front first, until the
// in-RAM window is full again or nothing is paged. It is the only
// goroutine a queue owns, and ends by itself (or when the queue goes).
func (q *classicQueue) pageIn() {
	refs := make([]pageRef, 0, pageInBatch)
	for {
		q.mu.Lock()
		refs = refs[:0]
		if !q.deleted {
			want := min(pageInBatch, q.memoryBudget()-q.ready.inMemory)
			want = max(want, 1) // a paged head always gets read
			q.collectPagedLocked(&refs, want)
		}
		if len(refs) == 0 {
			q.pagingIn = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()

		loaded := make([]*Message, len(refs))
		for i, r := range refs {
			m, err := q.vhost.broker.loadPaged(r.storeID)
			if err != nil {
				q.vhost.broker.log.Error("cannot read a paged message back from the log; it is dropped", "queue", q.name, "message_id", r.storeID, "err", err)
				continue
			}
			loaded[i] = m
		}

		q.mu.Lock()
		for i, r := range refs {
			p := q.ready.find(r.seq, r.prio)
			if p == nil || p.msg != nil || p.storeID != r.storeID {
				continue // delivered, expired or purged meanwhile
			}
			if loaded[i] == nil {
				if e, ok := q.ready.tombstone(r.seq, r.prio); ok {
					q.forgetLocked(&e)
				}
				continue
			}
			q.ready.attach(p, loaded[i])
		}
		q.dispatchLocked()
		full := q.ready.inMemory >= q.memoryBudget() || q.pagedLocked() == 0 || q.deleted
		if full {
			q.pagingIn = false
		}
		q.unlock()
		if full {
			return
		}
	}
}

// collectPagedLocked lists up to n paged entries in delivery order:
// highest priority level first, front to back.
func (q *classicQueue) collectPagedLocked(refs *[]pageRef, n int) {
	for lvl := len(q.ready.levels) - 1; lvl >= 0 && len(*refs) < n; lvl-- {
		ring := &q.ready.levels[lvl]
		for i := 0; i < ring.Len() && len(*refs) < n; i++ {
			e := ring.At(i)
			if !e.dead && e.msg == nil {
				*refs = append(*refs, pageRef{seq: e.seq, prio: e.prio, storeID: e.storeID})
			}
		}
	}
}

// loadPaged reads one paged message synchronously (basic.get, peek, dead
// letters); the caller must not hold the queue's lock.
func (b *Broker) loadPaged(storeID uint64) (*Message, error) {
	meta, body, err := b.store.ReadMessage(storeID)
	if errors.Is(err, store.ErrNotFound) {
		// Appended but not yet taken in by the log's committer (a message
		// paged the moment it was published): wait for it, once.
		<-barrier(b.store)
		meta, body, err = b.store.ReadMessage(storeID)
	}
	if err != nil {
		return nil, err
	}
	m := &Message{Body: body} // its place in the log belongs to the entry, not the message
	return m, decodeMeta(meta, m)
}
