package broker

// readySet holds a queue's messages that wait for a consumer. Without
// x-max-priority there is a single level. Messages that come back
// (requeue) wait in a heap so they go out again in their original order,
// ahead of everything of the same priority that was never delivered.
// Expired messages are tombstoned in place (dead) and skipped, so
// expiring a message in the middle costs a binary search, not a copy.
// A paged entry (msg == nil, not dead) is a stored message whose body was
// left on disk; the queue reads it back before it reaches the head.
type readySet struct {
	levels   []ring[entry] // index = priority
	requeued seqHeap
	live     int   // entries that are not tombstones
	bytes    int64 // body bytes of live entries
	inMemory int   // live entries whose message is in RAM
}

func (r *readySet) init(maxPriority uint8) {
	r.levels = make([]ring[entry], int(maxPriority)+1)
}

func (r *readySet) len() int { return r.live }

func (r *readySet) push(e entry) {
	r.levels[e.prio].PushBack(e)
	r.count(&e, 1)
}

func (r *readySet) pushRequeued(e entry) {
	r.requeued.Push(e)
	r.count(&e, 1)
}

// count adds (sign 1) or removes (-1) e from the tallies.
func (r *readySet) count(e *entry, sign int) {
	r.live += sign
	r.bytes += int64(sign) * int64(e.size)
	if e.msg != nil {
		r.inMemory += sign
	}
}

// source of the entry peek found: -1 is the requeued heap, else a level.
type source int

const fromRequeued source = -1

// peek returns the next entry to deliver and where it lives, or nil.
func (r *readySet) peek() (*entry, source) {
	var cand *entry
	src := fromRequeued
	for lvl := len(r.levels) - 1; lvl >= 0; lvl-- {
		ring := &r.levels[lvl]
		for ring.Len() > 0 && ring.Front().dead {
			ring.PopFront() // tombstone
		}
		if ring.Len() > 0 {
			cand, src = ring.Front(), source(lvl)
			break
		}
	}
	for r.requeued.Len() > 0 && r.requeued.Min().dead {
		r.requeued.Pop()
	}
	if r.requeued.Len() > 0 && (cand == nil || r.requeued.Min().prio >= cand.prio) {
		return r.requeued.Min(), fromRequeued
	}
	return cand, src
}

// take removes the entry peek returned from src.
func (r *readySet) take(src source) entry {
	var e entry
	if src == fromRequeued {
		e = r.requeued.Pop()
	} else {
		e = r.levels[src].PopFront()
	}
	r.count(&e, -1)
	return e
}

// pop removes and returns the next entry; ok is false when empty.
func (r *readySet) pop() (entry, bool) {
	e, src := r.peek()
	if e == nil {
		return entry{}, false
	}
	return r.take(src), true
}

// tombstone removes the never-delivered entry seq of priority prio if it
// is still waiting, returning it.
func (r *readySet) tombstone(seq uint64, prio uint8) (entry, bool) {
	if int(prio) >= len(r.levels) {
		return entry{}, false
	}
	ring := &r.levels[prio]
	if ring.Len() == 0 {
		return entry{}, false
	}
	if len(r.levels) == 1 {
		// One level: sequence numbers are consecutive from the front
		// (tombstones keep their place), so the index is a subtraction.
		i := seq - ring.Front().seq
		if seq < ring.Front().seq || i >= uint64(ring.Len()) {
			return entry{}, false
		}
		return r.bury(ring.At(int(i)), seq)
	}
	lo, hi := 0, ring.Len()
	for lo < hi {
		mid := (lo + hi) / 2
		if ring.At(mid).seq < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == ring.Len() {
		return entry{}, false
	}
	return r.bury(ring.At(lo), seq)
}

func (r *readySet) bury(p *entry, seq uint64) (entry, bool) {
	if p.seq != seq || p.dead {
		return entry{}, false
	}
	e := *p
	p.msg, p.dead = nil, true
	r.count(&e, -1)
	return e, true
}

// compact drops tombstones from the fronts, and all storage once nothing
// is left, so expired messages give their memory back.
func (r *readySet) compact() {
	if r.live == 0 {
		for i := range r.levels {
			r.levels[i].Clear()
		}
		r.requeued = nil
		r.inMemory = 0
		return
	}
	for i := range r.levels {
		ring := &r.levels[i]
		for ring.Len() > 0 && ring.Front().dead {
			ring.PopFront()
		}
	}
}

// clear drops everything and returns the live entries dropped.
func (r *readySet) clear() int {
	n := r.live
	for i := range r.levels {
		r.levels[i].Clear()
	}
	r.requeued = nil
	r.live, r.bytes, r.inMemory = 0, 0, 0
	return n
}

// find returns the live, never-delivered entry seq of priority prio.
func (r *readySet) find(seq uint64, prio uint8) *entry {
	if int(prio) >= len(r.levels) {
		return nil
	}
	ring := &r.levels[prio]
	if ring.Len() == 0 {
		return nil
	}
	lo, hi := 0, ring.Len()
	for lo < hi {
		mid := (lo + hi) / 2
		if ring.At(mid).seq < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == ring.Len() {
		return nil
	}
	if p := ring.At(lo); p.seq == seq && !p.dead {
		return p
	}
	return nil
}

// attach gives a paged entry its message back.
func (r *readySet) attach(p *entry, m *Message) {
	p.msg = m
	r.inMemory++
}
