package amqp091

import (
	"sort"
	"sync"
)

// confirms orders a channel's publisher confirms. Most publishes are
// confirmed as soon as they are routed; persistent messages in durable
// queues only once the log has fsynced them, which is reported on the
// log's commit goroutine. Confirms go out in order, coalesced into
// multiple-acks: an ack for N never covers a publish still waiting for disk.
type confirms struct {
	ch *channel

	mu        sync.Mutex // the read loop and the log's commit goroutine both flush
	published uint64
	confirmed uint64
	// waiting[head:] are the publishes not yet settled, in order. A head
	// index rather than re-slicing the front away on every completion: a
	// window of 1,000 publishes in flight would otherwise be copied once
	// per confirm, on the log's (or a stream's) commit goroutine.
	waiting []confirmWait
	head    int
	closed  bool // the channel is closing: send nothing more
}

type confirmWait struct {
	seq  uint64
	done bool
	ok   bool
}

// published records one publish and returns its sequence number. Rejected
// publishes (a queue's x-overflow reject-publish) are nacked; durable ones
// wait for complete.
func (cf *confirms) add(rejected, durable bool) uint64 {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	cf.published++
	seq := cf.published
	switch {
	case rejected:
		cf.waiting = append(cf.waiting, confirmWait{seq: seq, done: true})
	case durable:
		cf.waiting = append(cf.waiting, confirmWait{seq: seq})
	}
	return seq
}

// complete settles a publish that waited for the disk; called from the
// log's commit goroutine, it flushes at once.
func (cf *confirms) complete(seq uint64, err error) {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	w := cf.waiting[cf.head:]
	// Completions come almost in order: the one due is usually the first.
	i := 0
	if len(w) > 0 && w[0].seq != seq {
		i = sort.Search(len(w), func(i int) bool { return w[i].seq >= seq })
	}
	if i < len(w) && w[i].seq == seq {
		w[i].done, w[i].ok = true, err == nil
	}
	if err != nil {
		cf.ch.c.log.Error("a persistent message could not be written to disk; the publisher gets a nack", "channel", cf.ch.id, "err", err)
	}
	cf.flushLocked()
}

// flush sends every confirm that is due.
func (cf *confirms) flush() {
	cf.mu.Lock()
	cf.flushLocked()
	cf.mu.Unlock()
}

func (cf *confirms) flushLocked() {
	if cf.closed {
		return
	}
	ackTo := cf.confirmed
	n := cf.head
	for n < len(cf.waiting) && cf.waiting[n].done {
		w := cf.waiting[n]
		if w.ok {
			ackTo = w.seq
		} else {
			cf.ackLocked(w.seq - 1)
			cf.ch.c.out.push(outItem{kind: itemNack, channel: cf.ch.id, tag: w.seq})
			cf.confirmed = w.seq
			ackTo = w.seq
		}
		n++
	}
	cf.head = n
	switch {
	case cf.head == len(cf.waiting):
		cf.waiting, cf.head = cf.waiting[:0], 0
	case cf.head >= 256 && 2*cf.head >= len(cf.waiting):
		// Compact now and then, not per confirm: amortized O(1).
		k := copy(cf.waiting, cf.waiting[cf.head:])
		cf.waiting, cf.head = cf.waiting[:k], 0
	}
	if cf.head == len(cf.waiting) {
		ackTo = cf.published
	} else {
		ackTo = max(ackTo, cf.waiting[cf.head].seq-1)
	}
	cf.ackLocked(ackTo)
}

func (cf *confirms) ackLocked(to uint64) {
	if to <= cf.confirmed {
		return
	}
	cf.ch.c.out.push(outItem{kind: itemAck, channel: cf.ch.id, tag: to, flag: to-cf.confirmed > 1})
	cf.confirmed = to
}

// close stops confirms: the channel is going away.
func (cf *confirms) close() {
	cf.mu.Lock()
	cf.closed = true
	cf.mu.Unlock()
}
