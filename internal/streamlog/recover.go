package streamlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"
)

// Corruption is a damaged spot found by recovery.
type Corruption struct {
	File   string // file name
	Offset int64  // byte position of the damage in the file
	Reason string
}

// RecoveryReport says what Open found.
type RecoveryReport struct {
	Segments       int
	Bytes          int64 // bytes of segment files
	Scanned        int64 // segment bytes read and checked (tails after the index)
	TruncatedBytes int64 // torn tails cut (last segment, offsets.log)
	IndexesRebuilt int   // index files missing, damaged or behind their segment
	Corruptions    []Corruption
	Duration       time.Duration
}

func (s *Stream) corruption(file string, off int64, reason string) {
	s.report.Corruptions = append(s.report.Corruptions, Corruption{File: file, Offset: off, Reason: reason})
	s.log.Error("streamlog: damage found", "dir", s.dir, "file", file, "offset", off, "reason", reason)
}

// recover rebuilds the stream's state from its directory. It runs before
// the committer starts, so it owns everything. A closed segment is trusted
// up to its index's last entry (the index is checked: CRC per entry,
// ordering, position inside the file); from there on every chunk is read
// and checked, so that only the tail written since the last index entry
// costs reading. Only the last segment can have a torn tail: chunk N+1 is
// written after chunk N's fsync returned, and a segment is closed only once
// the next one exists.
func (s *Stream) recover() error {
	start := time.Now() // the real clock: Options.Clock may be a test's fake
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("streamlog: list %s: %w", s.dir, err)
	}
	var firsts []uint64
	idx := map[uint64]bool{}
	for _, n := range names {
		if f, ok := parseFileName(n, segmentSuffix); ok && segmentName(f) == n {
			firsts = append(firsts, f)
		} else if f, ok := parseFileName(n, indexSuffix); ok && indexName(f) == n {
			idx[f] = true
		}
	}
	sort.Slice(firsts, func(i, j int) bool { return firsts[i] < firsts[j] })
	for f := range idx {
		if _, found := slices.BinarySearch(firsts, f); !found {
			// An index whose segment retention deleted (crash in between).
			if err := s.fs.Remove(join(s.dir, indexName(f))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("streamlog: remove %s: %w", indexName(f), err)
			}
		}
	}
	var lastChunk uint64
	haveChunk := false
	for i, first := range firsts {
		seg, lc, ok, err := s.recoverSegment(first, i == len(firsts)-1)
		if err != nil {
			return err
		}
		if seg == nil {
			continue
		}
		if n := len(s.mu.segs); n > 0 {
			prev := s.mu.segs[n-1]
			if seg.first < prev.next {
				return fmt.Errorf("streamlog: %s starts at offset %d inside %s (ends at %d)",
					segmentName(seg.first), seg.first, segmentName(prev.first), prev.next)
			}
			if seg.first > prev.next {
				s.corruption(segmentName(prev.first), prev.size,
					fmt.Sprintf("offsets %d to %d missing before the next segment", prev.next, seg.first-1))
				prev.next = seg.first
			}
		}
		if ok {
			lastChunk, haveChunk = lc, true
		}
		s.mu.segs = append(s.mu.segs, seg)
		s.mu.bytes += seg.size
		s.report.Segments++
	}
	var active *segment
	if n := len(s.mu.segs); n > 0 {
		active = s.mu.segs[n-1]
	}
	if active == nil || active.file == nil {
		// No segment yet, or the last one is unreadable: start a new one
		// after everything else.
		var next uint64
		if active != nil {
			next = active.next
		}
		seg, err := s.createSegment(next)
		if err != nil {
			return err
		}
		s.mu.segs = append(s.mu.segs, seg)
		s.mu.bytes += seg.size
		active = seg
	}
	s.mu.next = active.next
	s.mu.assigned = active.next
	s.mu.lastChunk = active.next
	if haveChunk {
		s.mu.lastChunk = lastChunk
	}
	for _, seg := range s.mu.segs {
		s.mu.lastTS = max(s.mu.lastTS, seg.lastTS)
	}
	if err := s.recoverOffsets(); err != nil {
		return err
	}
	s.report.Bytes = s.mu.bytes
	s.report.Duration = time.Since(start)
	return nil
}

// recoverSegment opens, checks and indexes one segment. It returns nil for
// a segment it skips. For the last segment it leaves the file and index
// open for appending. lastChunk is the first offset of its newest chunk,
// valid when hasChunk.
func (s *Stream) recoverSegment(first uint64, last bool) (seg *segment, lastChunk uint64, hasChunk bool, err error) {
	seg = &segment{first: first, next: first, path: join(s.dir, segmentName(first)), idxPath: join(s.dir, indexName(first))}
	name := segmentName(first)
	flag := os.O_RDONLY
	if last {
		flag = os.O_RDWR | os.O_APPEND
	}
	f, err := s.fs.OpenFile(seg.path, flag, 0)
	if err != nil {
		return nil, 0, false, fmt.Errorf("streamlog: open %s: %w", seg.path, err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	size, err := f.Size()
	if err != nil {
		return nil, 0, false, fmt.Errorf("streamlog: size %s: %w", seg.path, err)
	}
	w := &window{}
	w.reset(f, size)
	hb, herr := w.bytes(0, fileHeaderSize)
	if herr == nil {
		var hf uint64
		if hf, herr = decodeFileHeader(hb, segmentMagic); herr == nil && hf != first {
			herr = fmt.Errorf("streamlog: header says first offset %d", hf)
		}
	}
	if herr != nil {
		if last && size < fileHeaderSize {
			// A crash while the segment was being created: it holds nothing.
			f.Close()
			keep = true
			for _, p := range []string{seg.path, seg.idxPath} {
				if err := s.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					return nil, 0, false, fmt.Errorf("streamlog: remove %s: %w", p, err)
				}
			}
			s.report.TruncatedBytes += size
			return nil, 0, false, nil
		}
		// Never write into or delete a file we cannot read.
		s.corruption(name, 0, "bad segment header: "+herr.Error()+"; segment skipped")
		return nil, 0, false, nil
	}

	// The index: its valid prefix, without entries past the file's end.
	var entries []indexEntry
	clean := false
	if idxf, err := s.fs.OpenFile(seg.idxPath, os.O_RDONLY, 0); err == nil {
		data, rerr := readAll(idxf)
		idxf.Close()
		if rerr != nil {
			return nil, 0, false, fmt.Errorf("streamlog: read %s: %w", seg.idxPath, rerr)
		}
		entries, clean = decodeIndex(data, first)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, 0, false, fmt.Errorf("streamlog: open %s: %w", seg.idxPath, err)
	}
	for len(entries) > 0 && entries[len(entries)-1].pos >= size {
		entries, clean = entries[:len(entries)-1], false
	}
	indexed := len(entries)

	// Scan from the last trusted chunk to the end.
	pos, expect := int64(fileHeaderSize), first
	if n := len(entries); n > 0 {
		seg.firstTS = entries[0].ts
		pos, expect = entries[n-1].pos, entries[n-1].offset
		entries = entries[:n-1] // re-added by the scan below
	}
	scanFrom := pos
	for pos < size {
		h, b, err := w.readChunk(pos)
		if err == nil && h.first != expect {
			err = fmt.Errorf("chunk starts at offset %d, expected %d", h.first, expect)
		}
		if err != nil {
			next := w.resync(pos, expect)
			if next >= 0 {
				s.corruption(name, pos, "damaged chunk skipped: "+err.Error())
				pos = next
				hb, _ := w.bytes(next, chunkHeaderSize)
				nh, _ := decodeChunkHeader(hb)
				expect = nh.first
				continue
			}
			if !last {
				s.corruption(name, pos, "damaged chunk at the end of a closed segment: "+err.Error())
				break
			}
			s.log.Warn("streamlog: cutting torn tail", "dir", s.dir, "segment", name, "offset", pos, "bytes", size-pos)
			if err := f.Truncate(pos); err != nil {
				return nil, 0, false, fmt.Errorf("streamlog: truncate %s: %w", seg.path, err)
			}
			if err := f.Sync(); err != nil {
				return nil, 0, false, fmt.Errorf("streamlog: sync %s: %w", seg.path, err)
			}
			s.report.TruncatedBytes += size - pos
			size = pos
			break
		}
		e := indexEntry{offset: h.first, ts: h.firstTS, pos: pos}
		if n := len(entries); n == 0 || pos == scanFrom || e.pos-entries[n-1].pos >= s.opts.IndexInterval {
			entries = append(entries, e)
		}
		if seg.firstTS == 0 && len(entries) > 0 {
			seg.firstTS = entries[0].ts
		}
		seg.lastTS = chunkLastTS(h, b)
		lastChunk, hasChunk = h.first, true
		expect = h.first + uint64(h.count)
		pos += h.size()
	}
	s.report.Scanned += size - scanFrom
	seg.size, seg.next, seg.index = size, expect, entries

	// Write the index back if it was damaged or is behind the segment.
	rebuilt := !clean || len(entries) != indexed
	if rebuilt {
		s.report.IndexesRebuilt++
	}
	if last {
		if rebuilt {
			seg.idx, err = s.writeIndexFile(seg.idxPath, first, entries)
		} else {
			seg.idx, err = s.fs.OpenFile(seg.idxPath, os.O_RDWR|os.O_APPEND, 0)
		}
		if err != nil {
			return nil, 0, false, fmt.Errorf("streamlog: index %s: %w", filepath.Base(seg.idxPath), err)
		}
		seg.file, keep = f, true
	} else if rebuilt {
		idxf, err := s.writeIndexFile(seg.idxPath, first, entries)
		if err != nil {
			return nil, 0, false, err
		}
		idxf.Close()
	}
	return seg, lastChunk, hasChunk, nil
}
