package store

import (
	"fmt"
	"sort"
	"time"
)

// run is the committer goroutine: the only writer of segment files. It
// commits as soon as there is something pending and it is not already
// writing, so a lone appender waits for one fsync and no timer; appenders
// arriving during an fsync are batched into the next round.
func (l *Log) run() {
	defer close(l.stopped)
	var tick <-chan time.Time
	if l.opts.CompactInterval > 0 {
		t := time.NewTicker(l.opts.CompactInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.kick:
			l.drain()
		case ch := <-l.compactCh:
			l.drain()
			ch <- l.compact()
		case <-tick:
			l.drain()
			if err := l.compact(); err != nil {
				l.log.Error("store: compaction failed", "err", err)
			}
		case <-l.quit:
			l.drain()
			return
		}
	}
}

// drain commits every pending request, MaxBatchBytes at a time.
func (l *Log) drain() {
	for {
		l.mu.Lock()
		n, size := 0, 0
		for n < len(l.mu.pending) && (n == 0 || size+l.mu.pending[n].size <= l.opts.MaxBatchBytes) {
			size += l.mu.pending[n].size
			n++
		}
		reqs := make([]*request, n)
		copy(reqs, l.mu.pending)
		l.mu.pending = append(l.mu.pending[:0], l.mu.pending[n:]...)
		l.mu.pendingBytes -= size
		l.pendingAtomic.Store(int64(l.mu.pendingBytes))
		l.mu.Unlock()
		if n == 0 {
			return
		}
		l.commit(reqs, size)
	}
}

// fail makes the log refuse further work: after a failed write or fsync the
// page cache state is unknown, so only a reopen (and recovery) is safe.
func (l *Log) fail(err error, reqs []*request) {
	l.mu.Lock()
	if l.mu.failed == nil {
		l.mu.failed = err
		l.log.Error("store: log failed, refusing appends until reopened", "err", err)
	}
	err = l.mu.failed
	pending := l.mu.pending
	l.mu.pending = nil
	l.mu.pendingBytes = 0
	l.pendingAtomic.Store(0)
	l.mu.Unlock()
	for _, r := range reqs {
		r.done(err)
	}
	for _, r := range pending {
		r.done(err)
	}
}

// commit writes reqs as one batch followed by a commit marker, fsyncs once
// and notifies every appender.
func (l *Log) commit(reqs []*request, size int) {
	if err := l.Err(); err != nil {
		l.fail(err, reqs)
		return
	}
	size += frameSize(&Record{Kind: kindCommit})
	l.mu.Lock()
	active := l.mu.active
	l.mu.Unlock()
	if active.size > segmentHeaderSize && active.size+int64(size) > l.opts.SegmentSize {
		if err := l.rotate(); err != nil {
			l.fail(err, reqs)
			return
		}
		l.mu.Lock()
		active = l.mu.active
		l.mu.Unlock()
	}

	// Encode and account under the lock, in request order, so the state
	// matches the log order. The state is applied before the bytes reach
	// the file; ReadMessage serves such messages from m.inflight.
	buf := l.buf[:0]
	count := 0
	l.mu.Lock()
	st := l.mu.st
	base := active.size
	for _, req := range reqs {
		if !validEnqueues(st, req.recs) {
			req.err = ErrUnknownMessage
			continue
		}
		for i := range req.recs {
			r := &req.recs[i]
			off := len(buf)
			buf = appendFrame(buf, r)
			st.apply(r, active, base+int64(off), int64(len(buf)-off))
			if r.Kind == KindMessage {
				st.inflight[r.MessageID] = r
			}
			count++
		}
	}
	l.mu.Unlock()
	if count > 0 {
		buf = appendFrame(buf, &Record{Kind: kindCommit, Seq: uint64(count), MessageID: uint64(len(buf))})
		n, err := active.file.Write(buf)
		l.mu.Lock()
		active.size += int64(n)
		for _, req := range reqs {
			for i := range req.recs {
				r := &req.recs[i]
				if r.Kind == KindMessage && st.inflight[r.MessageID] == r {
					delete(st.inflight, r.MessageID)
				}
			}
		}
		l.mu.Unlock()
		if err == nil {
			start := time.Now() // the real clock: opts.Now may be a test's fake
			err = active.file.Sync()
			if err == nil && l.opts.OnSync != nil {
				l.opts.OnSync(time.Since(start))
			}
		}
		if err != nil {
			l.fail(fmt.Errorf("store: commit to %s: %w", active.name, err), reqs)
			return
		}
	}
	if cap(buf) <= 2*l.opts.MaxBatchBytes {
		l.buf = buf[:0] // keep one batch buffer; drop a huge one
	}
	l.mu.Lock()
	if count > 0 {
		l.mu.stats.Batches++
		l.mu.stats.Syncs++
		l.mu.stats.Records += uint64(count)
		l.mu.stats.Bytes += uint64(len(buf))
	}
	for _, req := range reqs {
		if req.err == nil {
			l.mu.stats.Appends++
		}
	}
	l.mu.Unlock()
	for _, req := range reqs {
		req.done(req.err)
	}
	if err := l.collect(); err != nil {
		l.log.Error("store: segment deletion failed", "err", err)
	}
}

// validEnqueues checks that every Enqueue in recs names a live message or
// one appended earlier in recs.
func validEnqueues(st *state, recs []Record) bool {
	for i := range recs {
		if recs[i].Kind != KindEnqueue || st.canEnqueue(recs[i].MessageID) {
			continue
		}
		found := false
		for j := 0; j < i && !found; j++ {
			found = recs[j].Kind == KindMessage && recs[j].MessageID == recs[i].MessageID
		}
		if !found {
			return false
		}
	}
	return true
}

// compact rewrites sparse closed segments; committer only.
func (l *Log) compact() error {
	if err := l.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	var cands []*segState
	for _, s := range l.mu.st.segs {
		if s != l.mu.active && s.live > 0 &&
			float64(s.liveBytes) < l.opts.CompactRatio*float64(s.size-segmentHeaderSize) {
			cands = append(cands, s)
		}
	}
	l.mu.Unlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].seq < cands[j].seq })
	for _, s := range cands {
		if err := l.compactSegment(s); err != nil {
			return err
		}
	}
	return nil
}

// compactSegment copies what is live in s to the head and deletes s. Only
// the committer mutates the state, so what it reads here stays true until
// the copies are committed.
func (l *Log) compactSegment(s *segState) error {
	type msgCopy struct {
		id        uint64
		off, size int64
	}
	var msgs []msgCopy
	var recs []Record
	l.mu.Lock()
	st := l.mu.st
	for id, m := range st.msgs.All() {
		if m.seg == s.ref {
			off, size := st.loc(id, m)
			msgs = append(msgs, msgCopy{id, off, size})
		}
	}
	for q, es := range st.queues {
		for id, e := range es.All() {
			if e.seg == s.ref {
				recs = append(recs, Record{Kind: KindEnqueue, QueueID: q, MessageID: id, Seq: e.seq, Redelivered: e.redelivered})
			}
		}
	}
	var flags []Record
	for k, x := range st.extra {
		if x.flagSeg != s {
			continue
		}
		// An entry copied from s carries its flag; others need it re-recorded.
		if e, _ := st.entry(k.queue, k.msg); e.seg != s.ref {
			flags = append(flags, Record{Kind: KindRedelivered, QueueID: k.queue, MessageID: k.msg})
		}
	}
	l.mu.Unlock()
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].off < msgs[j].off })
	sort.Slice(recs, func(i, j int) bool { return recs[i].Seq < recs[j].Seq })
	out := make([]Record, 0, len(msgs)+len(recs)+len(flags))
	size := 0
	for _, m := range msgs {
		buf := make([]byte, m.size)
		if _, err := s.file.ReadAt(buf, m.off); err != nil {
			return fmt.Errorf("store: compact %s@%d: %w", s.name, m.off, err)
		}
		r, _, err := decodeFrame(buf)
		if err != nil || r.Kind != KindMessage || r.MessageID != m.id {
			return fmt.Errorf("store: compact %s@%d: message %d unreadable: %v", s.name, m.off, m.id, err)
		}
		out = append(out, r)
		size += frameSize(&r)
	}
	out = append(out, recs...)
	out = append(out, flags...)
	for i := range recs {
		size += frameSize(&recs[i])
	}
	for i := range flags {
		size += frameSize(&flags[i])
	}
	var cerr error
	if len(out) > 0 {
		l.commit([]*request{{recs: out, size: size, done: func(err error) { cerr = err }}}, size)
	}
	if cerr != nil {
		return cerr
	}
	l.mu.Lock()
	l.mu.stats.Compacts++
	live := s.live
	l.mu.st.pruneStale()
	l.mu.Unlock()
	l.log.Info("store: segment compacted", "segment", s.name, "messages", len(msgs), "entries", len(recs))
	if live != 0 {
		return fmt.Errorf("store: compact %s: %d records still live", s.name, live)
	}
	return nil
}
