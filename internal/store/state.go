package store

import "sort"

// The live-state accounting shared by recovery and the committer. Both apply
// records in log order through state.apply, so a recovered log accounts for
// space exactly as the running one did.
//
// A segment must be kept while it defines something live:
//   - a Message record whose message is still enqueued somewhere (or not yet
//     enqueued: the broker appends Message and its Enqueues together);
//   - an Enqueue record whose entry is not acked;
//   - the latest Redelivered record of a live entry.
//
// A record that cancels an entry (Ack, QueueDelete) in segment C must also
// outlive the segment B holding the cancelled Enqueue, or a recovery would
// resurrect the entry: B.pinnedFrom[C]++ and C.pins++ record that, and the
// pins are released when B is deleted. When compaction copies an Enqueue
// from B to the head, B may survive (it can hold pins itself) with the stale
// copy, so the cancelling record pins every segment holding a copy.

type segState struct {
	seq        uint64
	name       string // full path
	file       File
	size       int64 // bytes in the file, header included
	live       int
	liveBytes  int64
	pins       int
	pinnedFrom map[uint64]int
	deleted    bool
}

type msgState struct {
	seg      *segState
	off      int64 // of the frame
	size     int64 // frame size
	refs     int
	enqueued bool
	inflight *Record // set between apply and write, so ReadMessage works
}

type entryState struct {
	seq         uint64
	redelivered bool
	seg         *segState
	size        int64
	flagSeg     *segState // the segment of the latest Redelivered record
	flagSize    int64
	stale       []*segState // older segments holding superseded copies
}

type state struct {
	segs   map[uint64]*segState
	msgs   map[uint64]*msgState
	queues map[uint64]map[uint64]*entryState
	maxID  uint64
	// orphans counts entries whose Message record was never found
	// (recovery: it was lost to corruption).
	orphans int
}

func newState() *state {
	return &state{
		segs:   map[uint64]*segState{},
		msgs:   map[uint64]*msgState{},
		queues: map[uint64]map[uint64]*entryState{},
	}
}

func (s *segState) hold(n int64)    { s.live++; s.liveBytes += n }
func (s *segState) release(n int64) { s.live--; s.liveBytes -= n }

// canEnqueue reports whether an Enqueue for id is acceptable: the message is
// known and has not died (its segment may be gone).
func (st *state) canEnqueue(id uint64) bool {
	m := st.msgs[id]
	return m != nil && m.seg != nil
}

// apply accounts for record r, written as a frame of size bytes at off in seg.
func (st *state) apply(r *Record, seg *segState, off, size int64) {
	if r.Kind != KindQueueDelete {
		st.maxID = max(st.maxID, r.MessageID)
	}
	switch r.Kind {
	case KindMessage:
		if m := st.msgs[r.MessageID]; m != nil {
			// A copy made by compaction (or a duplicate id): move it. Or,
			// in recovery, the first sight of a message whose Enqueue came
			// earlier: compaction copies a Message to the head without the
			// Enqueues that live in other segments.
			if m.seg != nil {
				m.seg.release(m.size)
			}
			m.seg, m.off, m.size = seg, off, size
			seg.hold(size)
			return
		}
		st.msgs[r.MessageID] = &msgState{seg: seg, off: off, size: size}
		seg.hold(size)
	case KindEnqueue:
		m := st.msgs[r.MessageID]
		if m == nil {
			// Recovery only (the committer validates Enqueues): a
			// placeholder until the Message record is met, see finish.
			m = &msgState{}
			st.msgs[r.MessageID] = m
		}
		q := st.queues[r.QueueID]
		if q == nil {
			q = map[uint64]*entryState{}
			st.queues[r.QueueID] = q
		}
		if e := q[r.MessageID]; e != nil {
			// A compaction copy: move the entry, keep the flag.
			e.seg.release(e.size)
			if e.seg != seg {
				e.stale = append(e.stale, e.seg)
			}
			e.seg, e.size, e.seq = seg, size, r.Seq
			if r.Redelivered && e.flagSeg != nil {
				// The copy carries the flag: the old flag record is not needed.
				e.flagSeg.release(e.flagSize)
				e.flagSeg, e.flagSize = nil, 0
			}
			e.redelivered = e.redelivered || r.Redelivered
			seg.hold(size)
			return
		}
		q[r.MessageID] = &entryState{seq: r.Seq, redelivered: r.Redelivered, seg: seg, size: size}
		seg.hold(size)
		m.refs++
		m.enqueued = true
	case KindAck:
		if q := st.queues[r.QueueID]; q != nil {
			if e := q[r.MessageID]; e != nil {
				st.kill(r.QueueID, r.MessageID, e, seg)
			}
		}
	case KindRedelivered:
		if q := st.queues[r.QueueID]; q != nil {
			if e := q[r.MessageID]; e != nil {
				if e.flagSeg != nil {
					e.flagSeg.release(e.flagSize)
				}
				e.redelivered = true
				e.flagSeg, e.flagSize = seg, size
				seg.hold(size)
			}
		}
	case KindQueueDelete:
		for id, e := range st.queues[r.QueueID] {
			st.kill(r.QueueID, id, e, seg)
		}
		delete(st.queues, r.QueueID)
	}
}

// kill removes entry (q, id) cancelled by a record in segment by.
func (st *state) kill(q, id uint64, e *entryState, by *segState) {
	delete(st.queues[q], id)
	if len(st.queues[q]) == 0 {
		delete(st.queues, q)
	}
	e.seg.release(e.size)
	pin(e.seg, by)
	for _, s := range e.stale {
		pin(s, by)
	}
	if e.flagSeg != nil {
		e.flagSeg.release(e.flagSize)
	}
	m := st.msgs[id]
	if m == nil {
		return
	}
	m.refs--
	if m.refs <= 0 {
		if m.seg != nil {
			m.seg.release(m.size)
		}
		delete(st.msgs, id)
	}
}

// finishRecovery forgets messages that were never enqueued (a broker that
// appends a Message without Enqueues leaves them) and entries whose Message
// record was never found (lost to corruption).
func (st *state) finishRecovery() {
	for id, m := range st.msgs {
		switch {
		case m.seg == nil:
			for q, es := range st.queues {
				if e := es[id]; e != nil {
					e.seg.release(e.size)
					if e.flagSeg != nil {
						e.flagSeg.release(e.flagSize)
					}
					delete(es, id)
					if len(es) == 0 {
						delete(st.queues, q)
					}
					st.orphans++
				}
			}
			delete(st.msgs, id)
		case m.refs == 0:
			m.seg.release(m.size)
			delete(st.msgs, id)
		}
	}
}

// deletable returns, in order, the segments other than active that hold
// nothing live and pin nothing.
func (st *state) deletable(active *segState) []*segState {
	var out []*segState
	for _, s := range st.segs {
		if s != active && s.live == 0 && s.pins == 0 {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// pin keeps by (holding a cancelling record) until s is deleted.
func pin(s, by *segState) {
	if s == by || s.deleted {
		return
	}
	if s.pinnedFrom == nil {
		s.pinnedFrom = map[uint64]int{}
	}
	s.pinnedFrom[by.seq]++
	by.pins++
}

// forget removes a deleted segment and releases the pins it held.
func (st *state) forget(s *segState) {
	for c, n := range s.pinnedFrom {
		if cs := st.segs[c]; cs != nil {
			cs.pins -= n
		}
	}
	delete(st.segs, s.seq)
	s.deleted = true
}

// Entry is one live message in a queue, as recovered.
type Entry struct {
	MessageID   uint64
	Seq         uint64
	Redelivered bool
}

// queueEntries returns q's live entries ordered by Seq.
func (st *state) queueEntries(q uint64) []Entry {
	m := st.queues[q]
	out := make([]Entry, 0, len(m))
	for id, e := range m {
		out = append(out, Entry{MessageID: id, Seq: e.seq, Redelivered: e.redelivered})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Seq != out[j].Seq {
			return out[i].Seq < out[j].Seq
		}
		return out[i].MessageID < out[j].MessageID
	})
	return out
}

func (st *state) queueIDs() []uint64 {
	ids := make([]uint64, 0, len(st.queues))
	for q := range st.queues {
		ids = append(ids, q)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}
