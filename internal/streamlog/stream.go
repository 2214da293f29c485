package streamlog

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by a Stream.
var (
	// ErrClosed is returned for work submitted after Close.
	ErrClosed = errors.New("streamlog: stream closed")
	// ErrTooLarge fails an append whose record exceeds Options.MaxRecordSize.
	ErrTooLarge = errors.New("streamlog: record too large")
	// ErrBadName fails StoreOffset for an empty or too long consumer name.
	ErrBadName = errors.New("streamlog: bad consumer name")
)

// Options configure a Stream. The zero value is usable.
type Options struct {
	// MaxSegmentBytes makes the stream start a new segment when the next
	// chunk would grow the active one past it (default 64 MiB). A chunk is
	// never split, so one append larger than this makes a larger segment.
	MaxSegmentBytes int64
	// MaxBytes is the retention by size: whole closed segments are deleted,
	// oldest first, while the stream is larger. 0 keeps everything.
	MaxBytes int64
	// MaxAge is the retention by age: a closed segment whose newest record
	// is older than this is deleted. 0 keeps everything.
	MaxAge time.Duration
	// MaxBatchBytes closes a group-commit chunk once it holds this many
	// bytes (default 1 MiB); the remaining appenders join the next one.
	// It also bounds a reader's buffer, apart from single larger records.
	MaxBatchBytes int
	// MaxRecordSize bounds one append: its records and their 12-byte
	// headers (default 64 MiB).
	MaxRecordSize int
	// IndexInterval is how many segment bytes lie at most between two
	// sparse index entries (default 64 KiB).
	IndexInterval int64
	// ReadUnsynced shows readers a chunk as soon as it is written to the
	// operating system, before its fsync, so a tailing reader waits for a
	// write and not for the disk (as RabbitMQ's streams and Kafka do).
	// Appenders and StoreOffset are still answered only after the fsync,
	// and a chunk the OS holds survives a crash of the process (kill -9).
	// What it gives up: after a power loss or kernel crash a chunk a
	// reader has seen may be missing, and its offsets are given to later
	// records. Off (the default), readers see durable records only.
	ReadUnsynced bool
	// Clock is the time source for retention by age (default time.Now).
	Clock  func() time.Time
	FS     FS           // default OSFS{}
	Logger *slog.Logger // default discards
}

func (o *Options) setDefaults() {
	if o.MaxSegmentBytes <= 0 {
		o.MaxSegmentBytes = 64 << 20
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.MaxRecordSize <= 0 {
		o.MaxRecordSize = 64 << 20
	}
	// One append is one chunk at most; keep chunks far below the format's
	// maxChunkLength.
	o.MaxRecordSize = min(o.MaxRecordSize, maxChunkLength/4)
	o.MaxBatchBytes = min(o.MaxBatchBytes, maxChunkLength/4)
	if o.IndexInterval <= 0 {
		o.IndexInterval = 64 << 10
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// segment is one segment file and its sparse index. Fields other than
// file/idx are guarded by Stream.mu; closed segments never change.
type segment struct {
	first   uint64 // offset of its first record (its name)
	next    uint64 // offset after its last durable record
	size    int64  // durable bytes in the file
	firstTS int64  // first record's timestamp (0 while empty)
	lastTS  int64  // newest record's timestamp (0 while empty)
	path    string
	idxPath string
	// index is append-only: a reader may keep a copy of the slice header.
	index []indexEntry

	// Only for the active segment, owned by the committer.
	file File
	idx  File
}

type appendReq struct {
	recs  [][]byte
	one   []byte // AppendOneAsync's record (recs is nil)
	ts    int64
	first uint64
	size  int
	done  func(first uint64, err error)
}

type offsetReq struct {
	kind   byte
	name   string
	offset uint64
	done   func(error)
}

// Stats describe a stream.
type Stats struct {
	FirstOffset uint64 // first retained offset
	NextOffset  uint64 // offset the next append gets; NextOffset-FirstOffset messages
	Bytes       int64  // bytes of segment files
	Segments    int
	Appends     uint64 // records made durable since Open
	Chunks      uint64 // group commits (write + fsync) since Open
	Deleted     uint64 // segments deleted by retention since Open
	Corrupt     uint64 // damaged chunks readers skipped since Open
}

// Stream is one append-only log of records in its own directory. Its
// methods are safe for concurrent use.
type Stream struct {
	pendingAtomic atomic.Int64 // mirrors mu.pendingBytes for lock-free reads
	corrupt       atomic.Uint64

	dir    string
	fs     FS
	log    *slog.Logger
	opts   Options
	report RecoveryReport

	kick    chan struct{} // wakes the committer; capacity 1
	ctl     chan func()   // runs a function on the committer
	quit    chan struct{}
	stopped chan struct{}

	// Owned by the committer goroutine (and by recovery before it starts).
	chunk       chunkBuilder
	offsetsFile File
	offsetsSize int64
	offsetsLive int64 // bytes the live positions would take rewritten
	// offsetsCompactAt is offsetsCompactMin; crash tests lower it.
	offsetsCompactAt int64

	mu struct {
		sync.Mutex
		pending      []*appendReq
		pendingBytes int
		offsetReqs   []*offsetReq
		assigned     uint64 // next offset to hand to an appender
		lastTS       int64  // newest assigned timestamp: timestamps never go back
		closed       bool
		failed       error // sticky: after a failed write or fsync
		segs         []*segment
		next         uint64 // next offset readers may see (durable unless ReadUnsynced)
		lastChunk    uint64 // first offset of the newest chunk readers may see
		bytes        int64
		notify       chan struct{} // closed and replaced when next grows or on Close
		offsets      map[string]uint64
		stats        Stats
		// free holds answered appendReqs for reuse: a publisher's every
		// message is one append, and this saves an allocation each.
		free []*appendReq
	}
}

// maxFreeReqs bounds Stream.mu.free.
const maxFreeReqs = 4096

// Open recovers the stream in dir (creating it if needed) and starts its
// committer goroutine; Close stops it.
func Open(dir string, opts Options) (*Stream, error) {
	opts.setDefaults()
	s := &Stream{
		dir: dir, fs: opts.FS, log: opts.Logger, opts: opts,
		kick: make(chan struct{}, 1), ctl: make(chan func()),
		quit: make(chan struct{}), stopped: make(chan struct{}),
		offsetsCompactAt: offsetsCompactMin,
	}
	s.mu.notify = make(chan struct{})
	s.mu.offsets = map[string]uint64{}
	if err := s.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("streamlog: mkdir %s: %w", dir, err)
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		return nil, err
	}
	r := s.report
	s.log.Info("streamlog: recovered", "dir", dir, "segments", r.Segments, "first", s.mu.segs[0].first,
		"next", s.mu.next, "bytes", s.mu.bytes, "consumers", len(s.mu.offsets), "duration", r.Duration,
		"truncated_bytes", r.TruncatedBytes, "indexes_rebuilt", r.IndexesRebuilt, "corrupt", len(r.Corruptions))
	go s.run()
	return s, nil
}

// Report returns what Open found.
func (s *Stream) Report() RecoveryReport { return s.report }

// Append appends recs, all with timestamp ts, and returns once they are
// durable (fsynced). They get consecutive offsets starting at first.
func (s *Stream) Append(recs [][]byte, ts time.Time) (first uint64, err error) {
	type result struct {
		first uint64
		err   error
	}
	ch := make(chan result, 1)
	s.AppendAsync(recs, ts, func(first uint64, err error) { ch <- result{first, err} })
	r := <-ch
	return r.first, r.err
}

// AppendAsync submits recs, all with timestamp ts, as one atomic unit (after
// a crash all or none of them are there) and returns at once; done runs
// when they are durable, with the offset of the first, or with the error
// that prevented it. Appenders arriving while a chunk is being fsynced are
// group-committed into the next chunk with one fsync. Timestamps never go
// back: a ts older than the newest stored one is stored as that one.
//
// done runs on the committer goroutine (or inline on early failure): it must
// not block and must not call back into the Stream. recs must not be
// modified until done runs.
func (s *Stream) AppendAsync(recs [][]byte, ts time.Time, done func(first uint64, err error)) {
	size := chunkHeaderSize
	for _, r := range recs {
		size += recordHeaderSize + len(r)
	}
	if len(recs) == 0 {
		done(0, errors.New("streamlog: append of no records"))
		return
	}
	s.submit(recs, nil, size, ts, done)
}

// AppendOneAsync is AppendAsync of the one record rec, without the slice
// around it (the broker appends one message at a time).
func (s *Stream) AppendOneAsync(rec []byte, ts time.Time, done func(first uint64, err error)) {
	s.submit(nil, rec, chunkHeaderSize+recordHeaderSize+len(rec), ts, done)
}

func (s *Stream) submit(recs [][]byte, one []byte, size int, ts time.Time, done func(first uint64, err error)) {
	if size-chunkHeaderSize > s.opts.MaxRecordSize {
		done(0, fmt.Errorf("%w: %d bytes in one append (max %d)", ErrTooLarge, size-chunkHeaderSize, s.opts.MaxRecordSize))
		return
	}
	n := uint64(len(recs))
	if recs == nil {
		n = 1
	}
	s.mu.Lock()
	err := s.mu.failed
	if s.mu.closed {
		err = ErrClosed
	}
	if err != nil {
		s.mu.Unlock()
		done(0, err)
		return
	}
	t := ts.UnixNano()
	if t < s.mu.lastTS {
		t = s.mu.lastTS
	}
	s.mu.lastTS = t
	var req *appendReq
	if k := len(s.mu.free); k > 0 {
		req, s.mu.free = s.mu.free[k-1], s.mu.free[:k-1]
	} else {
		req = new(appendReq)
	}
	*req = appendReq{recs: recs, one: one, ts: t, first: s.mu.assigned, size: size, done: done}
	s.mu.assigned += n
	s.mu.pending = append(s.mu.pending, req)
	s.mu.pendingBytes += size
	s.pendingAtomic.Store(int64(s.mu.pendingBytes))
	s.mu.Unlock()
	s.wake()
}

func (s *Stream) wake() {
	select {
	case s.kick <- struct{}{}:
	default: // the committer is already due to run
	}
}

// PendingBytes is how much has been appended but not yet made durable: the
// broker holds publishers back while it is large.
func (s *Stream) PendingBytes() int { return int(s.pendingAtomic.Load()) }

// Changed returns a channel closed the next time records become readable
// (or the stream closes): a tailing consumer waits on it instead of polling.
func (s *Stream) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.notify
}

// Stats returns the stream's current shape and counters.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.mu.stats
	st.FirstOffset = s.mu.segs[0].first
	st.NextOffset = s.mu.next
	st.Bytes = s.mu.bytes
	st.Segments = len(s.mu.segs)
	st.Corrupt = s.corrupt.Load()
	return st
}

// Err returns the error that stopped the stream from accepting appends (a
// failed write or fsync), or nil. After it the stream must be closed and
// opened again.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.failed
}

// Close makes what is pending durable, stops the committer, closes the
// files and wakes every waiting reader.
func (s *Stream) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.mu.closed = true
	s.mu.Unlock()
	close(s.quit)
	<-s.stopped
	s.closeFiles()
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.mu.notify)
	return s.mu.failed
}

// Delete closes the stream and removes its files and directory (for a
// deleted queue). Readers still open keep reading what they have open.
func (s *Stream) Delete() error {
	if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
		s.log.Warn("streamlog: closing a stream to delete it", "dir", s.dir, "err", err)
	}
	names, err := s.fs.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("streamlog: list %s: %w", s.dir, err)
	}
	for _, n := range names {
		if err := s.fs.Remove(join(s.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("streamlog: remove %s: %w", n, err)
		}
	}
	if err := s.fs.SyncDir(s.dir); err != nil {
		return fmt.Errorf("streamlog: sync dir %s: %w", s.dir, err)
	}
	if err := s.fs.Remove(s.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("streamlog: remove %s: %w", s.dir, err)
	}
	return nil
}

func (s *Stream) closeFiles() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.mu.segs); n > 0 {
		a := s.mu.segs[n-1]
		if a.file != nil {
			a.file.Close()
		}
		if a.idx != nil {
			a.idx.Close()
		}
	}
	if s.offsetsFile != nil {
		s.offsetsFile.Close()
	}
}

// Offsets returns every stored consumer position.
func (s *Stream) Offsets() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.mu.offsets)
}

// Offset returns the stored position of consumer name.
func (s *Stream) Offset(name string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	off, ok := s.mu.offsets[name]
	return off, ok
}

// StoreOffset durably stores offset as consumer name's position and returns
// once it is fsynced. Positions are written by the same committer as the
// records, so many StoreOffset calls share fsyncs.
func (s *Stream) StoreOffset(name string, offset uint64) error {
	ch := make(chan error, 1)
	s.StoreOffsetAsync(name, offset, func(err error) { ch <- err })
	return <-ch
}

// StoreOffsetAsync is StoreOffset with a callback, run as AppendAsync's.
func (s *Stream) StoreOffsetAsync(name string, offset uint64, done func(error)) {
	s.submitOffset(&offsetReq{kind: offsetKindStore, name: name, offset: offset, done: done})
}

// DeleteOffset durably forgets consumer name's position.
func (s *Stream) DeleteOffset(name string) error {
	ch := make(chan error, 1)
	s.submitOffset(&offsetReq{kind: offsetKindDelete, name: name, done: func(err error) { ch <- err }})
	return <-ch
}

func (s *Stream) submitOffset(r *offsetReq) {
	if r.name == "" || len(r.name) > maxConsumerName {
		r.done(fmt.Errorf("%w: %d bytes (1 to %d)", ErrBadName, len(r.name), maxConsumerName))
		return
	}
	s.mu.Lock()
	err := s.mu.failed
	if s.mu.closed {
		err = ErrClosed
	}
	if err == nil {
		s.mu.offsetReqs = append(s.mu.offsetReqs, r)
	}
	s.mu.Unlock()
	if err != nil {
		r.done(err)
		return
	}
	s.wake()
}

// ApplyRetention deletes the closed segments that MaxBytes and MaxAge no
// longer keep; it also runs whenever a segment rolls. The broker calls it
// on a timer so that age retention happens on an idle stream too. It runs
// on the committer, between chunks, and returns how many segments went.
func (s *Stream) ApplyRetention() (int, error) {
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	select {
	case s.ctl <- func() { n, err := s.retain(); ch <- result{n, err} }:
		r := <-ch
		return r.n, r.err
	case <-s.stopped:
		return 0, ErrClosed
	}
}
