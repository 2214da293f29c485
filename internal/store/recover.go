package store

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Corruption is a damaged spot found by recovery.
type Corruption struct {
	Segment string // file name
	Offset  int64  // byte offset of the damage in the file
	Reason  string
}

// RecoveryReport says what Open found.
type RecoveryReport struct {
	Segments       int           // segment files read
	Queues         int           // queues with live entries
	Messages       int           // live messages
	Entries        int           // live (queue, message) entries
	Bytes          int64         // bytes scanned
	Duration       time.Duration // time spent
	CorruptRecords int           // damaged spots skipped (len(Corruptions))
	Corruptions    []Corruption
	TruncatedBytes int64 // torn tail cut from the last segment
	Orphans        int   // Enqueue records whose message was not found
}

type scanItem struct {
	rec  Record
	off  int64
	size int64
}

type scanBatch struct {
	items  []scanItem
	damage []int64 // offsets of skipped damage inside the batch
	start  int64
}

// scanResult is what scanSegment found in one segment's bytes.
type scanResult struct {
	batches    []scanBatch // complete batches, in order, to apply
	truncateAt int64       // -1, or where the torn tail of the last segment starts
	dangling   []int64     // damage in an incomplete batch of a non-last segment
}

// scanSegment splits data (a whole segment file) into committed batches. A
// batch counts only once its commit marker is read. Damage (a frame whose
// length, kind or CRC is wrong) is skipped by resynchronising on the next
// offset where a valid frame starts. Because the committer writes batch N+1
// only after batch N's fsync returned, only the final batch of the last
// segment can have been in flight at a crash: damage there is a torn tail
// and is cut; damage anywhere else is corruption and is reported.
func scanSegment(data []byte, last bool) scanResult {
	res := scanResult{truncateAt: -1}
	pos := int64(segmentHeaderSize)
	cur := scanBatch{start: pos}
	var held *scanBatch // a committed but damaged batch: torn tail if it is the final one
	for pos < int64(len(data)) {
		r, n, err := decodeFrame(data[pos:])
		if err != nil {
			cur.damage = append(cur.damage, pos)
			next := resync(data, pos+1)
			if next < 0 {
				pos = int64(len(data))
				break
			}
			pos = next
			continue
		}
		if r.Kind != kindCommit {
			cur.items = append(cur.items, scanItem{rec: r, off: pos, size: int64(n)})
			pos += int64(n)
			continue
		}
		pos += int64(n)
		if held != nil {
			res.batches = append(res.batches, *held)
			held = nil
		}
		if len(cur.damage) > 0 {
			b := cur
			held = &b
		} else {
			res.batches = append(res.batches, cur)
		}
		cur = scanBatch{start: pos}
	}
	incomplete := len(cur.items) > 0 || len(cur.damage) > 0
	switch {
	case last && held != nil && !incomplete:
		res.truncateAt = held.start
	case last:
		if held != nil {
			res.batches = append(res.batches, *held)
		}
		if incomplete {
			res.truncateAt = cur.start
		}
	default:
		if held != nil {
			res.batches = append(res.batches, *held)
		}
		if incomplete {
			res.dangling = append(res.dangling, cur.start)
		}
	}
	return res
}

// resync returns the first offset >= from where a valid frame starts, or -1.
func resync(data []byte, from int64) int64 {
	for p := from; p+frameHeaderSize <= int64(len(data)); p++ {
		if _, _, err := decodeFrame(data[p:]); err == nil {
			return p
		}
	}
	return -1
}

// listSegments returns the segment sequences in dir, ascending.
func listSegments(fs FS, dir string) ([]uint64, error) {
	names, err := fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, n := range names {
		if !strings.HasSuffix(n, segmentSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(n, segmentSuffix), 10, 64)
		if err != nil || segmentName(seq) != n {
			continue
		}
		seqs = append(seqs, seq)
	}
	return seqs, nil
}

func readAll(f File) ([]byte, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	data := make([]byte, size)
	n, err := f.ReadAt(data, 0)
	if err == io.EOF && int64(n) == size {
		err = nil
	}
	return data[:n], err
}

// recover rebuilds l's state from the segments on disk. It runs before the
// committer starts, so it owns everything.
func (l *Log) recover() error {
	start := l.now()
	rep := &l.report
	seqs, err := listSegments(l.fs, l.dir)
	if err != nil {
		return fmt.Errorf("store: list %s: %w", l.dir, err)
	}
	st := l.mu.st
	lastLog := start
	var last *segState
	for i, seq := range seqs {
		l.nextSeq = seq + 1
		isLast := i == len(seqs)-1
		name := join(l.dir, segmentName(seq))
		f, err := l.fs.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("store: open %s: %w", name, err)
		}
		data, err := readAll(f)
		if err != nil {
			f.Close()
			return fmt.Errorf("store: read %s: %w", name, err)
		}
		rep.Segments++
		rep.Bytes += int64(len(data))
		hseq, herr := decodeSegmentHeader(data)
		if herr == nil && hseq != seq {
			herr = fmt.Errorf("store: header says segment %d", hseq)
		}
		if herr != nil {
			if isLast && len(data) < segmentHeaderSize {
				// A crash while the segment was being created: it holds nothing.
				f.Close()
				if err := l.fs.Remove(name); err != nil {
					return fmt.Errorf("store: remove %s: %w", name, err)
				}
				rep.TruncatedBytes += int64(len(data))
				continue
			}
			// Never write into or delete a file we cannot read.
			l.corrupt(segmentName(seq), 0, herr.Error())
			f.Close()
			continue
		}
		seg := &segState{seq: seq, name: name, file: f, size: int64(len(data))}
		st.addSeg(seg)
		res := scanSegment(data, isLast)
		for _, b := range res.batches {
			for _, off := range b.damage {
				l.corrupt(segmentName(seq), off, "bad frame (length, kind or CRC)")
			}
			for j := range b.items {
				it := &b.items[j]
				st.apply(&it.rec, seg, it.off, it.size)
			}
		}
		for _, off := range res.dangling {
			l.corrupt(segmentName(seq), off, "incomplete batch before end of segment")
		}
		if res.truncateAt >= 0 {
			cut := int64(len(data)) - res.truncateAt
			l.log.Warn("store: cutting torn tail", "segment", segmentName(seq), "offset", res.truncateAt, "bytes", cut)
			if err := f.Truncate(res.truncateAt); err != nil {
				return fmt.Errorf("store: truncate %s: %w", name, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("store: sync %s: %w", name, err)
			}
			seg.size = res.truncateAt
			rep.TruncatedBytes += cut
		}
		if isLast {
			last = seg
		}
		if now := l.now(); now.Sub(lastLog) >= time.Second {
			lastLog = now
			l.log.Info("store: recovering", "segment", i+1, "of", len(seqs), "bytes", rep.Bytes,
				"messages", st.msgs.Len(), "elapsed", now.Sub(start))
		}
	}
	st.finishRecovery()
	rep.Orphans = st.orphans
	rep.Messages = st.msgs.Len()
	rep.Queues = len(st.queues)
	for _, q := range st.queues {
		rep.Entries += q.Len()
	}
	rep.Duration = l.now().Sub(start)
	rep.CorruptRecords = len(rep.Corruptions)
	if last == nil {
		return nil
	}
	l.mu.active = last
	return nil
}

func (l *Log) corrupt(seg string, off int64, reason string) {
	l.report.Corruptions = append(l.report.Corruptions, Corruption{Segment: seg, Offset: off, Reason: reason})
	l.log.Error("store: corrupt record skipped", "segment", seg, "offset", off, "reason", reason)
}
