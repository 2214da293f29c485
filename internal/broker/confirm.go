package broker

import "sync"

// ConfirmQueue orders one client connection's answers to its publishes
// (an MQTT PUBACK or PUBREC, a STOMP RECEIPT, a WebSocket "confirmed") so
// that a positive answer goes out only once its message is as safe as the
// answer says: a message the Publisher wrote to the log (persistent, taken
// by a durable queue) once the log has fsynced it, everything else at once
// -- but never before an answer queued earlier, because clients expect
// them in order (MQTT 3.1.1 [MQTT-4.6.0-2], STOMP receipts). Nothing here
// blocks a publish on the disk: the read loop queues the answer and reads
// on, so the messages of many in-flight publishes share the log's group
// commit (one fsync), and a lone publisher waits for one fsync, not a
// timer.
//
// send delivers the items, in queue order, each with the error that kept
// its message from the disk (nil: durable, or it needed no wait). It runs
// under the queue's lock, on the goroutine that made an item due: the
// caller of Add/Confirm, or the log's commit goroutine. It must not block
// and must not call back into the queue. (AMQP's publisher confirms have
// their own queue, amqp091/confirm.go, which coalesces them into
// multiple-acks; its tx.commit-ok uses this one.)
type ConfirmQueue[T any] struct {
	send func(item T, err error)

	mu      sync.Mutex       // guards below
	slots   []confirmSlot[T] // slots[head:] are unsent, in order
	head    int
	first   uint64        // sequence number of slots[head]
	closed  bool          // send nothing more
	changed chan struct{} // closed when slots shrink, for Wait; nil if none waits
}

type confirmSlot[T any] struct {
	item T
	done bool
	err  error
}

// NewConfirmQueue returns an empty queue that hands due items to send.
func NewConfirmQueue[T any](send func(item T, err error)) *ConfirmQueue[T] {
	return &ConfirmQueue[T]{send: send}
}

// Confirm queues the answer to the publishes p made since its last wait:
// item is sent once the messages among them that were written to the log
// are on disk (see Publisher.WaitPublished), after every earlier item.
// It reports whether item waits for the disk.
func (q *ConfirmQueue[T]) Confirm(p *Publisher, item T) bool {
	if !p.unsynced && len(p.streams) == 0 && len(p.quorumWaits) == 0 {
		q.Add(item) // the common case, without the closures of a wait
		return false
	}
	return q.ConfirmAfter(item, p.WaitPublished)
}

// ConfirmAfter queues item to be sent once wait's done has been called,
// after every earlier item; wait reports false if there is nothing to wait
// for (Publisher.WaitPublished, Publisher.WaitLog).
func (q *ConfirmQueue[T]) ConfirmAfter(item T, wait func(done func(error)) bool) bool {
	q.mu.Lock()
	seq := q.first + uint64(len(q.slots)-q.head)
	q.slots = append(q.slots, confirmSlot[T]{item: item})
	q.mu.Unlock()
	// Not under mu: a failed log calls done at once, on this goroutine.
	if wait(func(err error) { q.complete(seq, err) }) {
		return true
	}
	q.complete(seq, nil)
	return false
}

// Add queues an item that needs no wait of its own (a negative answer, or
// the receipt of a frame that published nothing): it is sent at once
// unless earlier items are still waiting, then right after them.
func (q *ConfirmQueue[T]) Add(item T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.slots) {
		if !q.closed {
			q.send(item, nil)
		}
		return
	}
	q.slots = append(q.slots, confirmSlot[T]{item: item, done: true})
}

// complete marks item seq due and sends the due items at the head.
func (q *ConfirmQueue[T]) complete(seq uint64, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if seq < q.first || seq-q.first >= uint64(len(q.slots)-q.head) {
		return // dropped by Close
	}
	i := q.head + int(seq-q.first)
	q.slots[i].done, q.slots[i].err = true, err
	if i != q.head {
		return // an earlier item still waits
	}
	n := i
	for n < len(q.slots) && q.slots[n].done {
		if !q.closed {
			q.send(q.slots[n].item, q.slots[n].err)
		}
		n++
	}
	clear(q.slots[q.head:n]) // drop the items' references
	q.first += uint64(n - q.head)
	q.head = n
	switch {
	case q.head == len(q.slots):
		q.slots, q.head = q.slots[:0], 0
	case q.head >= 256 && 2*q.head >= len(q.slots):
		// Compact now and then, not per item: amortized O(1).
		k := copy(q.slots, q.slots[q.head:])
		clear(q.slots[k:])
		q.slots, q.head = q.slots[:k], 0
	}
	if q.changed != nil {
		close(q.changed)
		q.changed = nil
	}
}

// Len is the number of items not sent yet.
func (q *ConfirmQueue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.slots) - q.head
}

// Wait blocks while max or more items are unsent, or until stop is
// closed; it reports whether there is room. A read loop calls it to stop
// reading a client whose answers pile up faster than the disk takes them
// (push-back), and Wait(1, ...) waits until everything is sent (a STOMP
// DISCONNECT's receipt follows the receipts before it).
func (q *ConfirmQueue[T]) Wait(max int, stop <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if len(q.slots)-q.head < max || q.closed {
			q.mu.Unlock()
			return true
		}
		if q.changed == nil {
			q.changed = make(chan struct{})
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

// Close drops every unsent item and sends nothing more: the connection is
// gone. Waits still pending on the log complete into nothing.
func (q *ConfirmQueue[T]) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	clear(q.slots)
	q.first += uint64(len(q.slots) - q.head)
	q.slots, q.head = nil, 0
	if q.changed != nil {
		close(q.changed)
		q.changed = nil
	}
}
