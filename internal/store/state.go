package store

import (
	"math"
	"sort"
)

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
//
// Memory: the broker may park millions of messages, so the per-message index
// (msgs and the per-queue entries) holds 16-byte pointer-free values in
// idIndexes: the GC never scans them, and a message with one entry costs
// about 34 bytes. Segments are named in it by a uint32 ref, not a pointer.
// What only some messages or entries need (a location beyond 4 GiB, a
// Redelivered record, stale copies, a record not yet written) lives in side
// maps.

// The frame sizes of the fixed-size records (see payloadSize).
const (
	enqueueFrameSize = frameHeaderSize + 25
	flagFrameSize    = frameHeaderSize + 16
)

// bigLoc in msgState.off and .size says the location is in state.big.
const bigLoc = math.MaxUint32

type segState struct {
	seq        uint64
	ref        uint32 // the segment's name in msgState and entryState
	name       string // full path
	file       File
	size       int64 // bytes in the file, header included
	live       int
	liveBytes  int64
	pins       int
	pinnedFrom map[uint32]int // by ref of the pinned segment
	deleted    bool
}

// msgState locates a live message's Message record.
type msgState struct {
	seg  uint32 // ref; 0: no Message record met yet (a recovery placeholder)
	off  uint32 // of the frame; bigLoc: see state.big
	size uint32 // frame size; bigLoc: see state.big
	refs uint32 // live entries naming the message
}

// entryState is a live (queue, message) entry, indexed by message id.
type entryState struct {
	seq         uint64
	seg         uint32 // ref of the segment holding the Enqueue record
	redelivered bool
}

type entryKey struct{ queue, msg uint64 }

// entryExtra is what only some entries have.
type entryExtra struct {
	flagSeg *segState   // the segment of the latest Redelivered record, or nil
	stale   []*segState // older segments holding superseded copies, not yet deleted
}

type msgLoc struct{ off, size int64 }

type state struct {
	segs    map[uint32]*segState // by ref
	nextRef uint32
	msgs    *idIndex[msgState]
	big     map[uint64]msgLoc // locations that do not fit msgState
	queues  map[uint64]*idIndex[entryState]
	extra   map[entryKey]entryExtra
	// inflight holds Message records between apply and write, so that
	// ReadMessage can serve them.
	inflight map[uint64]*Record
	maxID    uint64
	// orphans counts entries whose Message record was never found
	// (recovery: it was lost to corruption).
	orphans int
}

func newState() *state {
	return &state{
		segs:     map[uint32]*segState{},
		msgs:     newIDIndex[msgState](),
		big:      map[uint64]msgLoc{},
		queues:   map[uint64]*idIndex[entryState]{},
		extra:    map[entryKey]entryExtra{},
		inflight: map[uint64]*Record{},
	}
}

// addSeg registers s under a fresh ref. Refs of deleted segments appear in
// no msgState or entryState (they held nothing live), so after the counter
// wraps any ref not in use may be taken again.
func (st *state) addSeg(s *segState) {
	for {
		st.nextRef++
		if _, used := st.segs[st.nextRef]; st.nextRef != 0 && !used {
			break
		}
	}
	s.ref = st.nextRef
	st.segs[s.ref] = s
}

func (s *segState) hold(n int64)    { s.live++; s.liveBytes += n }
func (s *segState) release(n int64) { s.live--; s.liveBytes -= n }

// loc returns the offset and frame size of message id's record.
func (st *state) loc(id uint64, m msgState) (off, size int64) {
	if m.off == bigLoc {
		b := st.big[id]
		return b.off, b.size
	}
	return int64(m.off), int64(m.size)
}

// setLoc points m (message id) at a frame of size bytes at off in seg.
func (st *state) setLoc(id uint64, m *msgState, seg *segState, off, size int64) {
	m.seg = seg.ref
	if off >= bigLoc || size >= bigLoc {
		m.off, m.size = bigLoc, bigLoc
		st.big[id] = msgLoc{off, size}
		return
	}
	m.off, m.size = uint32(off), uint32(size)
	delete(st.big, id)
}

// releaseMsg releases the segment space held by message id's record.
func (st *state) releaseMsg(id uint64, m msgState) {
	if m.seg != 0 {
		_, size := st.loc(id, m)
		st.segs[m.seg].release(size)
	}
}

// canEnqueue reports whether an Enqueue for id is acceptable: the message is
// known and has not died (its segment may be gone).
func (st *state) canEnqueue(id uint64) bool {
	m, ok := st.msgs.Get(id)
	return ok && m.seg != 0
}

// apply accounts for record r, written as a frame of size bytes at off in seg.
func (st *state) apply(r *Record, seg *segState, off, size int64) {
	if r.Kind != KindQueueDelete {
		st.maxID = max(st.maxID, r.MessageID)
	}
	switch r.Kind {
	case KindMessage:
		// An existing msgState is a copy made by compaction (or a
		// duplicate id): move it. Or, in recovery, the first sight of a
		// message whose Enqueue came earlier: compaction copies a Message
		// to the head without the Enqueues that live in other segments.
		m, _ := st.msgs.Get(r.MessageID)
		st.releaseMsg(r.MessageID, m)
		st.setLoc(r.MessageID, &m, seg, off, size)
		seg.hold(size)
		st.msgs.Set(r.MessageID, m)
	case KindEnqueue:
		// A missing message (recovery only: the committer validates
		// Enqueues) gets the zero msgState, a placeholder until the Message
		// record is met, see finishRecovery.
		m, _ := st.msgs.Get(r.MessageID)
		q := st.queues[r.QueueID]
		if q == nil {
			q = newIDIndex[entryState]()
			st.queues[r.QueueID] = q
		}
		k := entryKey{r.QueueID, r.MessageID}
		if e, dup := q.Get(r.MessageID); dup {
			// A compaction copy: move the entry, keep the flag.
			old := st.segs[e.seg]
			old.release(enqueueFrameSize)
			x, hasX := st.extra[k]
			if old != seg {
				x.stale = append(x.stale, old)
				hasX = true
			}
			if r.Redelivered && x.flagSeg != nil {
				// The copy carries the flag: the old flag record is not needed.
				x.flagSeg.release(flagFrameSize)
				x.flagSeg = nil
			}
			if hasX {
				st.setExtra(k, x)
			}
			e.seg, e.seq = seg.ref, r.Seq
			e.redelivered = e.redelivered || r.Redelivered
			seg.hold(enqueueFrameSize)
			q.Set(r.MessageID, e)
			return
		}
		q.Set(r.MessageID, entryState{seq: r.Seq, seg: seg.ref, redelivered: r.Redelivered})
		seg.hold(enqueueFrameSize)
		m.refs++
		st.msgs.Set(r.MessageID, m)
	case KindAck:
		if e, ok := st.entry(r.QueueID, r.MessageID); ok {
			st.kill(r.QueueID, r.MessageID, e, seg)
		}
	case KindRedelivered:
		if e, ok := st.entry(r.QueueID, r.MessageID); ok {
			k := entryKey{r.QueueID, r.MessageID}
			x := st.extra[k]
			if x.flagSeg != nil {
				x.flagSeg.release(flagFrameSize)
			}
			x.flagSeg = seg
			seg.hold(flagFrameSize)
			st.extra[k] = x
			e.redelivered = true
			st.queues[r.QueueID].Set(r.MessageID, e)
		}
	case KindQueueDelete:
		if q := st.queues[r.QueueID]; q != nil {
			for id, e := range q.All() {
				st.kill(r.QueueID, id, e, seg)
			}
		}
		delete(st.queues, r.QueueID)
	}
}

// entry returns the live entry (q, id).
func (st *state) entry(q, id uint64) (entryState, bool) {
	if es := st.queues[q]; es != nil {
		return es.Get(id)
	}
	return entryState{}, false
}

// removeEntry deletes entry (q, id) from the index, and its queue with its
// last entry.
func (st *state) removeEntry(q, id uint64) {
	es := st.queues[q]
	es.Delete(id)
	if es.Len() == 0 {
		delete(st.queues, q)
	}
}

// setExtra stores x for k, or forgets k when x holds nothing.
func (st *state) setExtra(k entryKey, x entryExtra) {
	if x.flagSeg == nil && len(x.stale) == 0 {
		delete(st.extra, k)
		return
	}
	st.extra[k] = x
}

// kill removes entry (q, id) cancelled by a record in segment by.
func (st *state) kill(q, id uint64, e entryState, by *segState) {
	st.removeEntry(q, id)
	es := st.segs[e.seg]
	es.release(enqueueFrameSize)
	pin(es, by)
	k := entryKey{q, id}
	if x, ok := st.extra[k]; ok {
		for _, s := range x.stale {
			pin(s, by)
		}
		if x.flagSeg != nil {
			x.flagSeg.release(flagFrameSize)
		}
		delete(st.extra, k)
	}
	m, ok := st.msgs.Get(id)
	if !ok {
		return
	}
	if m.refs > 1 {
		m.refs--
		st.msgs.Set(id, m)
		return
	}
	st.releaseMsg(id, m)
	st.forgetMsg(id)
}

func (st *state) forgetMsg(id uint64) {
	st.msgs.Delete(id)
	delete(st.big, id)
}

// finishRecovery forgets messages that were never enqueued (a broker that
// appends a Message without Enqueues leaves them) and entries whose Message
// record was never found (lost to corruption).
func (st *state) finishRecovery() {
	for id, m := range st.msgs.All() {
		switch {
		case m.seg == 0:
			for q, es := range st.queues {
				if e, ok := es.Get(id); ok {
					st.segs[e.seg].release(enqueueFrameSize)
					k := entryKey{q, id}
					if x := st.extra[k]; x.flagSeg != nil {
						x.flagSeg.release(flagFrameSize)
					}
					delete(st.extra, k)
					st.removeEntry(q, id)
					st.orphans++
				}
			}
			st.forgetMsg(id)
		case m.refs == 0:
			st.releaseMsg(id, m)
			st.forgetMsg(id)
		}
	}
}

// pruneStale drops the deleted segments from the entries' stale lists
// (pinning a deleted segment is a no-op), so that compaction does not leave
// a side record behind for every entry it moved.
func (st *state) pruneStale() {
	for k, x := range st.extra {
		n := 0
		for _, s := range x.stale {
			if !s.deleted {
				x.stale[n] = s
				n++
			}
		}
		if n == len(x.stale) {
			continue
		}
		clear(x.stale[n:])
		x.stale = x.stale[:n]
		if n == 0 {
			x.stale = nil
		}
		st.setExtra(k, x)
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
		s.pinnedFrom = map[uint32]int{}
	}
	s.pinnedFrom[by.ref]++
	by.pins++
}

// forget removes a deleted segment and releases the pins it held.
func (st *state) forget(s *segState) {
	for c, n := range s.pinnedFrom {
		if cs := st.segs[c]; cs != nil {
			cs.pins -= n
		}
	}
	delete(st.segs, s.ref)
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
	es := st.queues[q]
	if es == nil {
		return nil
	}
	out := make([]Entry, 0, es.Len())
	for id, e := range es.All() {
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
