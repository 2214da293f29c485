package streamlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// ErrCaughtUp is returned by Reader.Next when the reader has returned every
// durable record; Wait blocks until there are more.
var ErrCaughtUp = errors.New("streamlog: no more records yet")

// PositionKind says how a Position picks the first record to read.
type PositionKind uint8

// Position kinds, as RabbitMQ's x-stream-offset names them.
const (
	// PosNext starts with the next record appended (the default).
	PosNext PositionKind = iota
	// PosFirst starts with the first retained record.
	PosFirst
	// PosLast starts with the newest chunk (group-committed batch): the
	// last record or the few appended with it.
	PosLast
	// PosOffset starts at Position.Offset (clamped to the retained range).
	PosOffset
	// PosTime starts with the first record whose timestamp is not before
	// Position.Time.
	PosTime
)

// Position is where a reader starts.
type Position struct {
	Kind   PositionKind
	Offset uint64    // PosOffset
	Time   time.Time // PosTime
}

// First, Last, Next, AtOffset and AtTime build Positions.
func First() Position                 { return Position{Kind: PosFirst} }
func Last() Position                  { return Position{Kind: PosLast} }
func Next() Position                  { return Position{Kind: PosNext} }
func AtOffset(offset uint64) Position { return Position{Kind: PosOffset, Offset: offset} }
func AtTime(t time.Time) Position     { return Position{Kind: PosTime, Time: t} }

func (p Position) String() string {
	switch p.Kind {
	case PosNext:
		return "next"
	case PosFirst:
		return "first"
	case PosLast:
		return "last"
	case PosOffset:
		return "offset=" + strconv.FormatUint(p.Offset, 10)
	case PosTime:
		return "timestamp=" + p.Time.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("position(%d)", p.Kind)
}

// Reader reads a stream's records in offset order, from disk through a
// bounded window: memory does not grow with the stream. A reader sees only
// durable records. It is not safe for concurrent use; any number of
// readers may read one stream while it is appended to.
type Reader struct {
	s       *Stream
	next    uint64 // offset of the next record to return
	seeking bool   // seeking by time: skip records older than minTS
	minTS   int64

	seg     *segment // the segment open in w, or nil
	segNext uint64   // seg.next when last looked at
	w       window
	pos     int64 // position of the next chunk in seg

	rec    []byte // undelivered records of the current chunk (alias w)
	recOff uint64 // offset of rec's first record
	left   uint32 // records in rec
}

// NewReader returns a reader starting at start. A position before the
// retained range starts at the first retained record; one past the end
// starts at the next record appended.
func (s *Stream) NewReader(start Position) (*Reader, error) {
	r := &Reader{s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, ErrClosed
	}
	first := s.mu.segs[0].first
	switch start.Kind {
	case PosFirst:
		r.next = first
	case PosLast:
		r.next = max(s.mu.lastChunk, first)
	case PosNext:
		r.next = s.mu.next
	case PosOffset:
		r.next = min(max(start.Offset, first), s.mu.next)
	case PosTime:
		r.seeking, r.minTS = true, start.Time.UnixNano()
		r.next = seekTime(s.mu.segs, r.minTS)
	default:
		return nil, fmt.Errorf("streamlog: unknown position kind %d", start.Kind)
	}
	return r, nil
}

// seekTime returns the offset of an indexed chunk at or before the first
// record stamped t or later: the newest chunk start known to be older
// than t (timestamps never go back, so nothing before it qualifies).
func seekTime(segs []*segment, t int64) uint64 {
	i := sort.Search(len(segs), func(i int) bool {
		return segs[i].size == fileHeaderSize || segs[i].firstTS >= t
	}) - 1
	if i < 0 {
		return segs[0].first
	}
	idx := segs[i].index
	j := sort.Search(len(idx), func(j int) bool { return idx[j].ts >= t }) - 1
	if j < 0 {
		return segs[i].first
	}
	return idx[j].offset
}

// Offset returns the offset of the next record the reader looks at.
func (r *Reader) Offset() uint64 { return r.next }

// Next returns the next record: its offset, timestamp and payload. The
// payload aliases the reader's buffer and is valid until the next call.
// Offsets increase by one per record, except across records lost to
// retention or damage. At the end of what is durable it returns
// ErrCaughtUp; Wait blocks until there is more.
func (r *Reader) Next() (offset uint64, ts time.Time, rec []byte, err error) {
	for {
		for r.left > 0 {
			t, payload, n := decodeRecord(r.rec)
			off := r.recOff
			r.rec, r.recOff, r.left = r.rec[n:], off+1, r.left-1
			if off < r.next {
				continue
			}
			r.next = off + 1
			if r.seeking && t < r.minTS {
				continue // seeking by time: older than the target
			}
			r.seeking = false
			return off, time.Unix(0, t), payload, nil
		}
		if err := r.nextChunk(); err != nil {
			return 0, time.Time{}, nil, err
		}
	}
}

// NextWait is Next that waits for a record when caught up.
func (r *Reader) NextWait(ctx context.Context) (offset uint64, ts time.Time, rec []byte, err error) {
	for {
		offset, ts, rec, err = r.Next()
		if !errors.Is(err, ErrCaughtUp) {
			return offset, ts, rec, err
		}
		if err := r.Wait(ctx); err != nil {
			return 0, time.Time{}, nil, err
		}
	}
}

// Wait blocks until a record at or after the reader's position is durable,
// ctx is done (its error is returned) or the stream closes (ErrClosed).
func (r *Reader) Wait(ctx context.Context) error {
	for {
		s := r.s
		s.mu.Lock()
		avail, closed, ch := r.next < s.mu.next, s.mu.closed, s.mu.notify
		s.mu.Unlock()
		if avail {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	if r.seg == nil {
		return nil
	}
	r.seg = nil
	r.rec, r.left = nil, 0
	return r.w.f.Close()
}

// nextChunk loads the chunk holding r.next (or the first after it).
func (r *Reader) nextChunk() error {
	for {
		if r.seg == nil || r.pos >= r.w.end {
			if err := r.locate(); err != nil {
				return err
			}
			continue
		}
		hb, err := r.w.bytes(r.pos, chunkHeaderSize)
		if err != nil {
			r.damaged(err)
			continue
		}
		h, err := decodeChunkHeader(hb)
		if err != nil {
			r.damaged(err)
			continue
		}
		if !r.seeking && h.first+uint64(h.count) <= r.next && r.pos+h.size() <= r.w.end {
			r.pos += h.size() // seeking: skip by header
			continue
		}
		h, b, err := r.w.readChunk(r.pos)
		if err != nil {
			r.damaged(err)
			continue
		}
		r.next = max(r.next, h.first) // a gap: records lost to damage
		r.rec, r.recOff, r.left = b[chunkHeaderSize:], h.first, h.count
		r.pos += h.size()
		return nil
	}
}

// locate finds the segment holding r.next and opens it, or refreshes the
// readable end of the one open. It returns ErrCaughtUp when nothing is
// durable at r.next yet.
func (r *Reader) locate() error {
	s := r.s
	for attempt := 0; ; attempt++ {
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		segs := s.mu.segs
		if r.next < segs[0].first {
			r.next = segs[0].first // retention went past the reader
		}
		i := sort.Search(len(segs), func(i int) bool { return segs[i].first > r.next }) - 1
		seg := segs[i]
		if r.next >= seg.next {
			if i == len(segs)-1 {
				s.mu.Unlock()
				if r.seg != nil && r.seg != seg {
					r.Close()
				}
				if cap(r.w.buf) > idleBufferBytes {
					// Caught up: tailing needs only what new chunks take.
					r.w.buf, r.w.start = nil, 0
				}
				return ErrCaughtUp
			}
			r.next = segs[i+1].first // a gap at the end of a damaged segment
			s.mu.Unlock()
			continue
		}
		if seg == r.seg {
			if seg.size > r.w.end {
				r.w.end, r.segNext = seg.size, seg.next
				s.mu.Unlock()
				return nil
			}
			// The segment ends before r.next: damage at its end.
			r.next = seg.next
			s.mu.Unlock()
			continue
		}
		index, size, path := seg.index, seg.size, seg.path
		r.segNext = seg.next
		s.mu.Unlock()

		f, err := s.fs.OpenFile(path, os.O_RDONLY, 0)
		if errors.Is(err, os.ErrNotExist) && attempt < 100 {
			continue // retention deleted it meanwhile
		}
		if err != nil {
			return fmt.Errorf("streamlog: open %s: %w", path, err)
		}
		r.Close()
		r.seg = seg
		r.w.reset(f, size)
		r.pos = fileHeaderSize
		if j := sort.Search(len(index), func(j int) bool { return index[j].offset > r.next }) - 1; j >= 0 {
			r.pos = index[j].pos
		}
		return nil
	}
}

// damaged skips a chunk that fails its checks: to the next valid chunk of
// the segment (found by scanning, as recovery does), or past the segment.
// Records in between are lost to this reader; the damage is logged and
// counted.
func (r *Reader) damaged(err error) {
	r.s.corrupt.Add(1)
	r.s.log.Error("streamlog: damaged chunk skipped by reader", "dir", r.s.dir,
		"segment", filepath.Base(r.seg.path), "position", r.pos, "err", err)
	r.rec, r.left = nil, 0
	if next := r.w.resync(r.pos, r.next); next >= 0 {
		r.pos = next
		return
	}
	r.next = max(r.next, r.segNext)
	r.pos = r.w.end
}
