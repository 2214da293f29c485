package amqp091

import "sync"

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
	waiting   []confirmWait // publishes not yet settled, in order
	closed    bool          // the channel is closing: send nothing more
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
	for i := range cf.waiting {
		if cf.waiting[i].seq == seq {
			cf.waiting[i].done, cf.waiting[i].ok = true, err == nil
			break
		}
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
	n := 0
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
	cf.waiting = append(cf.waiting[:0], cf.waiting[n:]...)
	if len(cf.waiting) == 0 {
		ackTo = cf.published
	} else {
		ackTo = max(ackTo, cf.waiting[0].seq-1)
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
