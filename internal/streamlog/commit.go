package streamlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// run is the committer goroutine, the only writer of the stream's files. It
// commits as soon as something is pending and it is not already writing,
// so a lone appender waits for one write+fsync and no timer; appenders
// arriving during an fsync form the next chunk.
func (s *Stream) run() {
	defer close(s.stopped)
	for {
		select {
		case <-s.kick:
			s.drain()
		case fn := <-s.ctl:
			s.drain()
			fn()
		case <-s.quit:
			s.drain()
			// A clean shutdown leaves an index the next Open trusts.
			if err := s.Err(); err == nil {
				s.mu.Lock()
				a := s.mu.segs[len(s.mu.segs)-1]
				s.mu.Unlock()
				if err := a.idx.Sync(); err != nil {
					s.log.Warn("streamlog: index sync at close failed", "file", a.idxPath, "err", err)
				}
			}
			return
		}
	}
}

// drain commits everything pending, MaxBatchBytes of records at a time.
func (s *Stream) drain() {
	for {
		s.mu.Lock()
		n, size := 0, 0
		for n < len(s.mu.pending) && (n == 0 || size+s.mu.pending[n].size <= s.opts.MaxBatchBytes) {
			size += s.mu.pending[n].size
			n++
		}
		reqs := make([]*appendReq, n)
		copy(reqs, s.mu.pending)
		s.mu.pending = append(s.mu.pending[:0], s.mu.pending[n:]...)
		s.mu.pendingBytes -= size
		s.pendingAtomic.Store(int64(s.mu.pendingBytes))
		offs := s.mu.offsetReqs
		s.mu.offsetReqs = nil
		s.mu.Unlock()
		if n == 0 && len(offs) == 0 {
			// Idle: a stream that saw one burst does not keep a
			// batch-sized buffer (a broker may hold many streams).
			if cap(s.chunk.buf) > idleBufferBytes {
				s.chunk.buf = nil
			}
			return
		}
		s.commit(reqs, offs)
	}
}

// fail makes the stream refuse further work: after a failed write or fsync
// the page cache state is unknown, so only a reopen (and recovery) is safe.
func (s *Stream) fail(err error, reqs []*appendReq, offs []*offsetReq) {
	s.mu.Lock()
	if s.mu.failed == nil {
		s.mu.failed = err
		s.log.Error("streamlog: stream failed, refusing appends until reopened", "dir", s.dir, "err", err)
	}
	err = s.mu.failed
	reqs = append(reqs, s.mu.pending...)
	offs = append(offs, s.mu.offsetReqs...)
	s.mu.pending, s.mu.offsetReqs = nil, nil
	s.mu.pendingBytes = 0
	s.pendingAtomic.Store(0)
	s.mu.Unlock()
	for _, r := range reqs {
		r.done(0, err)
	}
	for _, r := range offs {
		r.done(err)
	}
}

// commit writes reqs as one chunk and offs to offsets.log, fsyncs both,
// publishes the new end to readers and answers every caller.
func (s *Stream) commit(reqs []*appendReq, offs []*offsetReq) {
	if err := s.Err(); err != nil {
		s.fail(err, reqs, offs)
		return
	}
	var chunk []byte
	if len(reqs) > 0 {
		s.chunk.reset(s.chunk.buf, reqs[0].first, reqs[0].ts)
		for _, r := range reqs {
			if r.recs == nil {
				s.chunk.add(r.ts, r.one)
			}
			for _, rec := range r.recs {
				s.chunk.add(r.ts, rec)
			}
		}
		chunk = s.chunk.finish()
	}
	s.mu.Lock()
	active := s.mu.segs[len(s.mu.segs)-1]
	s.mu.Unlock()
	rolled := false
	if chunk != nil && active.size > fileHeaderSize && active.size+int64(len(chunk)) > s.opts.MaxSegmentBytes {
		var err error
		if active, err = s.roll(reqs[0].first); err != nil {
			s.fail(err, reqs, offs)
			return
		}
		rolled = true
	}
	if chunk != nil {
		pos := active.size
		indexed, err := s.writeChunk(active, chunk)
		if err != nil {
			s.fail(err, reqs, offs)
			return
		}
		if s.opts.ReadUnsynced {
			s.publishChunk(active, reqs, pos, len(chunk), indexed)
		}
		if err := active.file.Sync(); err != nil {
			s.fail(fmt.Errorf("streamlog: sync %s: %w", active.path, err), reqs, offs)
			return
		}
		if !s.opts.ReadUnsynced {
			s.publishChunk(active, reqs, pos, len(chunk), indexed)
		}
	}
	if len(offs) > 0 {
		if err := s.writeOffsets(offs); err != nil {
			s.fail(err, reqs, offs)
			return
		}
	}
	if cap(s.chunk.buf) > 2*s.opts.MaxBatchBytes+chunkHeaderSize {
		s.chunk.buf = nil // keep one batch buffer; drop a huge one
	}
	for _, r := range reqs {
		r.done(r.first, nil)
	}
	for _, r := range offs {
		r.done(nil)
	}
	s.recycle(reqs)
	if rolled {
		if _, err := s.retain(); err != nil {
			s.log.Error("streamlog: retention failed", "dir", s.dir, "err", err)
		}
	}
	if err := s.maybeCompactOffsets(); err != nil {
		s.fail(err, nil, nil)
	}
}

// recycle keeps answered requests for the next appenders.
func (s *Stream) recycle(reqs []*appendReq) {
	for _, r := range reqs {
		*r = appendReq{} // drop the records and the callback
	}
	s.mu.Lock()
	if room := maxFreeReqs - len(s.mu.free); room > 0 {
		s.mu.free = append(s.mu.free, reqs[:min(room, len(reqs))]...)
	}
	s.mu.Unlock()
}

// wantIndex says whether the chunk e starts gets an index entry: the first
// chunk of a segment and then one at most every IndexInterval bytes.
func (s *Stream) wantIndex(seg *segment, e indexEntry) bool {
	n := len(seg.index)
	return n == 0 || e.pos-seg.index[n-1].pos >= s.opts.IndexInterval
}

// writeChunk writes chunk at the end of the active segment, and its index
// entry if it gets one (indexed). It does not fsync: commit does, after
// readers may have been shown the chunk (Options.ReadUnsynced). The index
// file is never fsynced here either: recovery checks it against the
// segment and rebuilds what is missing or points past the end.
func (s *Stream) writeChunk(active *segment, chunk []byte) (indexed bool, err error) {
	pos := active.size
	if _, err := active.file.Write(chunk); err != nil {
		return false, fmt.Errorf("streamlog: write %s: %w", active.path, err)
	}
	e := indexEntry{offset: s.chunk.first, ts: s.chunk.firstTS, pos: pos}
	s.mu.Lock()
	indexed = s.wantIndex(active, e)
	s.mu.Unlock()
	if indexed {
		if _, err := active.idx.Write(appendIndexEntry(nil, e)); err != nil {
			return false, fmt.Errorf("streamlog: write %s: %w", active.idxPath, err)
		}
	}
	return indexed, nil
}

// publishChunk makes a written chunk (reqs' records, n bytes at pos of
// active) part of the stream: readers see it and are woken.
func (s *Stream) publishChunk(active *segment, reqs []*appendReq, pos int64, n int, indexed bool) {
	s.mu.Lock()
	count := uint64(s.chunk.count)
	if active.size == fileHeaderSize {
		active.firstTS = reqs[0].ts
	}
	active.size += int64(n)
	active.lastTS = reqs[len(reqs)-1].ts
	active.next = reqs[0].first + count
	s.mu.next = active.next
	s.mu.lastChunk = reqs[0].first
	s.mu.bytes += int64(n)
	s.mu.stats.Appends += count
	s.mu.stats.Chunks++
	if indexed {
		active.index = append(active.index, indexEntry{offset: reqs[0].first, ts: reqs[0].ts, pos: pos})
	}
	close(s.mu.notify)
	s.mu.notify = make(chan struct{})
	s.mu.Unlock()
}

// roll closes the active segment and creates the next one, named by first
// (the offset of the chunk about to be written): header written and
// fsynced, index created, directory fsynced. The closed segment's index is
// fsynced so that a restart need not rebuild it.
func (s *Stream) roll(first uint64) (*segment, error) {
	s.mu.Lock()
	old := s.mu.segs[len(s.mu.segs)-1]
	s.mu.Unlock()
	if err := old.idx.Sync(); err != nil {
		return nil, fmt.Errorf("streamlog: sync %s: %w", old.idxPath, err)
	}
	seg, err := s.createSegment(first)
	if err != nil {
		return nil, err
	}
	old.file.Close()
	old.idx.Close()
	s.mu.Lock()
	old.file, old.idx = nil, nil
	s.mu.segs = append(s.mu.segs, seg)
	s.mu.bytes += seg.size
	s.mu.Unlock()
	s.log.Debug("streamlog: segment rolled", "dir", s.dir, "segment", filepath.Base(seg.path))
	return seg, nil
}

// createSegment creates an empty segment and its index; it returns them
// open and the directory fsynced.
func (s *Stream) createSegment(first uint64) (*segment, error) {
	seg := &segment{
		first: first, next: first, size: fileHeaderSize,
		path: join(s.dir, segmentName(first)), idxPath: join(s.dir, indexName(first)),
	}
	f, err := s.fs.OpenFile(seg.path, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("streamlog: create %s: %w", seg.path, err)
	}
	if _, err := f.Write(encodeFileHeader(segmentMagic, first)); err != nil {
		f.Close()
		return nil, fmt.Errorf("streamlog: write %s: %w", seg.path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("streamlog: sync %s: %w", seg.path, err)
	}
	idx, err := s.writeIndexFile(seg.idxPath, first, nil)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		f.Close()
		idx.Close()
		return nil, fmt.Errorf("streamlog: sync dir %s: %w", s.dir, err)
	}
	seg.file, seg.idx = f, idx
	return seg, nil
}

// writeIndexFile (re)writes an index file with entries, fsyncs it and
// returns it open for appending. A crash while it is written leaves an
// index that recovery finds damaged and rebuilds.
func (s *Stream) writeIndexFile(path string, first uint64, entries []indexEntry) (File, error) {
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("streamlog: create %s: %w", path, err)
	}
	buf := encodeFileHeader(indexMagic, first)
	for _, e := range entries {
		buf = appendIndexEntry(buf, e)
	}
	if _, err := f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("streamlog: write %s: %w", path, err)
	}
	return f, nil
}

// retain deletes the oldest closed segments while MaxBytes or MaxAge says
// they must go; committer only. A segment leaves the list first (readers
// then start after it), its files are removed and the directory fsynced.
// Readers that have it open keep reading it: its space comes back when
// they move on.
func (s *Stream) retain() (int, error) {
	if s.opts.MaxBytes <= 0 && s.opts.MaxAge <= 0 {
		return 0, nil
	}
	cutoff := s.opts.Clock().Add(-s.opts.MaxAge).UnixNano()
	s.mu.Lock()
	var dead []*segment
	bytes := s.mu.bytes
	for len(dead) < len(s.mu.segs)-1 {
		seg := s.mu.segs[len(dead)]
		bySize := s.opts.MaxBytes > 0 && bytes > s.opts.MaxBytes
		byAge := s.opts.MaxAge > 0 && seg.lastTS < cutoff
		if !bySize && !byAge {
			break
		}
		dead = append(dead, seg)
		bytes -= seg.size
	}
	s.mu.segs = append([]*segment(nil), s.mu.segs[len(dead):]...)
	s.mu.bytes = bytes
	s.mu.stats.Deleted += uint64(len(dead))
	s.mu.Unlock()
	if len(dead) == 0 {
		return 0, nil
	}
	var errs []error
	for _, seg := range dead {
		for _, p := range []string{seg.path, seg.idxPath} {
			if err := s.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("streamlog: remove %s: %w", p, err))
			}
		}
		s.log.Debug("streamlog: segment deleted by retention", "dir", s.dir, "segment", filepath.Base(seg.path),
			"next", seg.next, "bytes", seg.size)
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("streamlog: sync dir %s: %w", s.dir, err))
	}
	return len(dead), errors.Join(errs...)
}
