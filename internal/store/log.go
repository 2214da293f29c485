package store

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the Log.
var (
	// ErrClosed is returned for work submitted after Close.
	ErrClosed = errors.New("store: log closed")
	// ErrNotFound is returned by ReadMessage for an id that is not live.
	ErrNotFound = errors.New("store: message not found")
	// ErrUnknownMessage fails an Append whose Enqueue names a message that is
	// neither live nor appended earlier in the same call.
	ErrUnknownMessage = errors.New("store: enqueue of unknown message")
	// ErrInvalidRecord fails an Append with a record the log cannot store.
	ErrInvalidRecord = errors.New("store: invalid record")
)

// Options configure a Log. The zero value is usable.
type Options struct {
	FS     FS           // default OSFS{}
	Logger *slog.Logger // default discards
	// SegmentSize bounds a segment file (default 64 MiB). A single Append
	// larger than this still goes into one segment.
	SegmentSize int64
	// MaxBatchBytes closes a group-commit batch once it holds this many bytes
	// (default 4 MiB); the remaining appenders join the next one.
	MaxBatchBytes int
	// MaxRecordSize bounds one record's payload (default 128 MiB).
	MaxRecordSize int
	// CompactInterval runs Compact in the background; 0 disables it (the
	// broker may call Compact itself).
	CompactInterval time.Duration
	// CompactRatio: a closed segment whose live bytes are below this fraction
	// of its size is rewritten by Compact (default 0.1).
	CompactRatio float64
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnSync, when set, is told how long each batch's fsync took (the
	// metrics' fsync latency histogram). It runs on the commit goroutine
	// after the fsync and before the appenders are answered, so it must
	// be quick and must not call back into the Log.
	OnSync func(time.Duration)
}

func (o *Options) setDefaults() {
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SegmentSize <= 0 {
		o.SegmentSize = 64 << 20
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 4 << 20
	}
	if o.MaxRecordSize <= 0 {
		o.MaxRecordSize = 128 << 20
	}
	if o.CompactRatio <= 0 {
		o.CompactRatio = 0.1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Stats are counters since Open.
type Stats struct {
	Appends  uint64 // Append calls made durable
	Records  uint64 // records written
	Batches  uint64 // write+fsync rounds (group commits)
	Syncs    uint64 // file fsyncs, segment creation included
	Bytes    uint64 // bytes written
	Segments int    // segment files
	Messages int    // live messages
	Deleted  uint64 // segments deleted
	Compacts uint64 // segments rewritten by Compact
}

type request struct {
	recs []Record
	done func(error)
	size int
	err  error
}

// Log is the durable message log. Its methods are safe for concurrent use.
type Log struct {
	// pendingAtomic mirrors mu.pendingBytes so that the broker can check
	// it on every persistent publish without taking mu.
	pendingAtomic atomic.Int64

	dir    string
	fs     FS
	log    *slog.Logger
	opts   Options
	now    func() time.Time
	report RecoveryReport

	kick      chan struct{} // wakes the committer; capacity 1
	compactCh chan chan error
	quit      chan struct{}
	stopped   chan struct{}

	// Owned by the committer goroutine (and by recover before it starts).
	buf     []byte
	nextSeq uint64

	mu struct {
		sync.Mutex
		pending      []*request
		pendingBytes int // mirrored in pendingAtomic for lock-free reads
		closed       bool
		failed       error // sticky: after a failed write or fsync
		st           *state
		active       *segState
		stats        Stats
	}
}

// Open recovers the log in dir (creating it if needed) and starts its
// committer. The returned report is also logged.
func Open(dir string, opts Options) (*Log, RecoveryReport, error) {
	opts.setDefaults()
	l := &Log{
		dir: dir, fs: opts.FS, log: opts.Logger, opts: opts, now: opts.Now,
		kick: make(chan struct{}, 1), compactCh: make(chan chan error),
		quit: make(chan struct{}), stopped: make(chan struct{}), nextSeq: 1,
	}
	l.mu.st = newState()
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, RecoveryReport{}, fmt.Errorf("store: mkdir %s: %w", dir, err)
	}
	if err := l.recover(); err != nil {
		l.closeFiles()
		return nil, RecoveryReport{}, err
	}
	if l.mu.active == nil {
		if err := l.rotate(); err != nil {
			l.closeFiles()
			return nil, RecoveryReport{}, err
		}
	}
	if err := l.collect(); err != nil {
		l.closeFiles()
		return nil, RecoveryReport{}, err
	}
	r := l.report
	l.log.Info("store: recovered", "dir", dir, "segments", r.Segments, "queues", r.Queues,
		"messages", r.Messages, "entries", r.Entries, "bytes", r.Bytes, "duration", r.Duration,
		"corrupt_records", r.CorruptRecords, "truncated_bytes", r.TruncatedBytes)
	go l.run()
	return l, r, nil
}

// Append submits recs as one atomic unit: after a crash either all of them
// or none are recovered. The channel receives nil once they are durable
// (fsynced), or the error that prevented it.
func (l *Log) Append(recs ...Record) <-chan error {
	ch := make(chan error, 1)
	l.AppendFunc(recs, func(err error) { ch <- err })
	return ch
}

// AppendFunc is Append with a callback, for callers that batch confirms.
// done runs on the committer goroutine (or inline on early failure): it must
// not block and must not call back into the Log. recs must not be modified
// until done runs. An empty recs is a barrier: done runs once everything
// appended before it is durable and the segments it freed are deleted.
func (l *Log) AppendFunc(recs []Record, done func(error)) {
	size := 0
	for i := range recs {
		r := &recs[i]
		if r.Kind == kindCommit || !r.Kind.valid() || payloadSize(r) > l.opts.MaxRecordSize {
			done(fmt.Errorf("%w: kind %v, %d bytes", ErrInvalidRecord, r.Kind, payloadSize(r)))
			return
		}
		size += frameSize(r)
	}
	l.mu.Lock()
	err := l.mu.failed
	if l.mu.closed {
		err = ErrClosed
	}
	if err == nil {
		l.mu.pending = append(l.mu.pending, &request{recs: recs, done: done, size: size})
		l.mu.pendingBytes += size
		l.pendingAtomic.Store(int64(l.mu.pendingBytes))
	}
	l.mu.Unlock()
	if err != nil {
		done(err)
		return
	}
	select {
	case l.kick <- struct{}{}:
	default: // the committer is already due to run
	}
}

// Compact rewrites closed segments held alive by few live records (below
// CompactRatio of their size) by appending those records to the head, then
// deletes them. It runs on the committer, between batches.
func (l *Log) Compact() error {
	ch := make(chan error, 1)
	select {
	case l.compactCh <- ch:
		return <-ch
	case <-l.stopped:
		return ErrClosed
	}
}

// Close writes what is pending, stops the committer and closes the files.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.mu.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.mu.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.stopped
	l.closeFiles()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.failed
}

func (l *Log) closeFiles() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.mu.st.segs {
		s.file.Close()
	}
}

// Stats returns counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.mu.stats
	s.Segments = len(l.mu.st.segs)
	s.Messages = l.mu.st.msgs.Len()
	return s
}

// Err returns the error that stopped the log from accepting appends (a failed
// write or fsync), or nil. After it the log must be closed and reopened.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.failed
}

// MaxMessageID returns the highest message id found in the log or appended
// since Open. Ids above it are safe for the broker to use: ids must never be
// reused while any record naming them may survive.
func (l *Log) MaxMessageID() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.st.maxID
}

// Recovered yields each queue with live entries, in ascending queue id, with
// its entries in Seq order: what the broker reloads after Open. It reflects
// the live state when called (right after Open: what was recovered). Bodies are
// read with ReadMessage, so the broker can keep only some in memory.
func (l *Log) Recovered() iter.Seq2[uint64, []Entry] {
	return func(yield func(uint64, []Entry) bool) {
		l.mu.Lock()
		ids := l.mu.st.queueIDs()
		l.mu.Unlock()
		for _, q := range ids {
			l.mu.Lock()
			es := l.mu.st.queueEntries(q)
			l.mu.Unlock()
			if len(es) > 0 && !yield(q, es) {
				return
			}
		}
	}
}

// ReadMessage returns the meta and body of live message id, reading them
// from its segment. The returned slices are the caller's.
func (l *Log) ReadMessage(id uint64) (meta, body []byte, err error) {
	for attempt := 0; ; attempt++ {
		l.mu.Lock()
		st := l.mu.st
		m, ok := st.msgs.Get(id)
		if !ok || m.seg == 0 {
			l.mu.Unlock()
			return nil, nil, ErrNotFound
		}
		if r := st.inflight[id]; r != nil {
			meta, body = append([]byte(nil), r.Meta...), append([]byte(nil), r.Body...)
			l.mu.Unlock()
			return meta, body, nil
		}
		seg := st.segs[m.seg]
		off, size := st.loc(id, m)
		l.mu.Unlock()
		buf := make([]byte, size)
		_, err = seg.file.ReadAt(buf, off)
		if err != nil {
			// Compaction may have moved the message and closed the file.
			l.mu.Lock()
			now, ok := l.mu.st.msgs.Get(id)
			moved := ok && now.seg != seg.ref
			l.mu.Unlock()
			if moved && attempt < 3 {
				continue
			}
			return nil, nil, fmt.Errorf("store: read message %d in %s@%d: %w", id, seg.name, off, err)
		}
		r, _, err := decodeFrame(buf)
		if err != nil || r.Kind != KindMessage || r.MessageID != id {
			return nil, nil, fmt.Errorf("store: read message %d in %s@%d: %w", id, seg.name, off, errors.Join(errBadFrame, err))
		}
		return r.Meta, r.Body, nil
	}
}

// rotate creates the next segment (header fsynced, directory fsynced) and
// makes it active. Committer only.
func (l *Log) rotate() error {
	seq := l.nextSeq
	name := join(l.dir, segmentName(seq))
	f, err := l.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", name, err)
	}
	if _, err := f.Write(encodeSegmentHeader(seq)); err != nil {
		f.Close()
		return fmt.Errorf("store: write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("store: sync %s: %w", name, err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("store: sync dir %s: %w", l.dir, err)
	}
	l.nextSeq++
	s := &segState{seq: seq, name: name, file: f, size: segmentHeaderSize}
	l.mu.Lock()
	l.mu.st.addSeg(s)
	l.mu.active = s
	l.mu.stats.Syncs++
	l.mu.Unlock()
	return nil
}

// collect deletes the segments that hold nothing live. A deletion can
// release pins that make further segments deletable, so it loops; the
// directory is fsynced before those pins are released, so that a segment
// holding acks never disappears before the segment holding their enqueues.
func (l *Log) collect() error {
	for {
		l.mu.Lock()
		dead := l.mu.st.deletable(l.mu.active)
		for _, s := range dead {
			delete(l.mu.st.segs, s.ref) // ReadMessage never needs a dead segment
		}
		l.mu.Unlock()
		if len(dead) == 0 {
			return nil
		}
		for _, s := range dead {
			s.file.Close()
			if err := l.fs.Remove(s.name); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("store: remove %s: %w", s.name, err)
			}
			l.log.Debug("store: segment deleted", "segment", s.name)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("store: sync dir %s: %w", l.dir, err)
		}
		l.mu.Lock()
		for _, s := range dead {
			l.mu.st.forget(s)
			l.mu.stats.Deleted++
		}
		l.mu.Unlock()
	}
}

// PendingBytes is how much has been appended but not yet written: the
// broker holds publishers back while it is large, so that a disk slower
// than the publishers cannot grow the heap without bound.
func (l *Log) PendingBytes() int { return int(l.pendingAtomic.Load()) }
