package broker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/streamlog"
)

// Streams (x-queue-type: stream): an append-only log per queue, read from
// an offset without removing anything. Every message a stream takes is
// appended to its own streamlog.Stream (group-committed: one write and one
// fsync for the appends that queue up meanwhile); a publisher's confirm
// waits for that fsync (barrier, and Publisher.waitAll in publish.go).
// Consumers see a chunk once it is written, before the fsync.
// Consumers read from disk through streamlog readers, one goroutine per
// reading group (stream_consume.go), so a reader far behind costs its own
// disk reads and never slows publishers or other readers. Messages leave
// by retention only (x-max-length-bytes, x-max-age), whole segments at a
// time.

// streamQueue is the stream kind behind a Queue handle.
type streamQueue struct {
	*Queue
	log      *streamlog.Stream
	cfg      queueConfig
	appended func(uint64, error) // q.onAppended, bound once: no closure per publish

	published atomic.Uint64
	delivered atomic.Uint64
	acked     atomic.Uint64
	gone      atomic.Bool // deleted or closed: enqueue refuses

	// The durability barrier. Appends are counted in the order they are
	// submitted, and the stream log completes them in that order, so "the
	// first n appends are done" is one counter.
	submitMu  sync.Mutex // held across submitted++ and AppendAsync, so both orders agree
	submitted atomic.Uint64
	doneMu    sync.Mutex // guards below
	completed uint64
	failedAt  uint64 // the first append that failed, counted from 1; 0 = none
	failErr   error
	waiters   []streamWaiter // waiters[whead:] wait, in target order
	whead     int
	due       []streamWaiter // onAppended's scratch (the committer's only)

	mu        sync.Mutex // guards below
	policy    *Policy
	consumers []*Consumer
	groupOf   map[*Consumer]*streamGroup
	groups    map[string]*streamGroup // named groups (x-stream-consumer) with members
	all       []*streamGroup          // every running group, anonymous ones too
	unacked   map[uint64]streamHeld   // by delivery ID
	nextID    uint64
	deleted   bool

	stop chan struct{}  // closed by markDeleted and close: every goroutine of the stream ends
	wg   sync.WaitGroup // the group readers and the retention ticker
}

// streamWaiter is a confirm waiting for the first target appends.
type streamWaiter struct {
	target uint64
	done   func(error)
}

// streamHeld is a message a group read: delivered and unsettled, or
// waiting to be delivered again.
type streamHeld struct {
	g           *streamGroup
	c           *Consumer // nil until delivered
	off         uint64
	m           *Message // nil in q.unacked for an anonymous group: it never delivers again
	redelivered bool
	gen         uint64 // the group's gen when delivered
}

// streamDirFor is where a stream's log lives: one directory per vhost and
// queue under Options.StreamDir, named so that any queue name is safe
// ("..", "/", 255 bytes) and the directory stays readable for the usual ones.
func streamDirFor(root, vhost, name string) string {
	part := func(prefix, s string) string {
		e := url.PathEscape(s)
		if len(e) > 180 {
			h := sha256.Sum256([]byte(s))
			return "h-" + hex.EncodeToString(h[:16])
		}
		return prefix + e
	}
	return filepath.Join(root, part("v-", vhost), part("q-", name))
}

// newStream opens (or recovers) the stream's log.
func newStream(q *Queue, cfg queueConfig, p *Policy) (*streamQueue, error) {
	b := q.vhost.broker
	if b.streamDir == "" {
		return nil, errorf(CodePreconditionFailed, "cannot declare stream '%s' in vhost '%s': this server keeps no data directory for streams", q.name, q.vhost.name)
	}
	// Consumers are shown a chunk once it is written, before its fsync
	// (confirms still wait for it): a tailing consumer then waits for a
	// write, not for the disk, as on RabbitMQ (docs/streams.md).
	opts := streamlog.Options{MaxSegmentBytes: cfg.segmentBytes, MaxAge: cfg.maxAge, Clock: b.now,
		ReadUnsynced: true, Logger: b.log.With("stream", q.name, "vhost", q.vhost.name)}
	if cfg.maxBytes > 0 {
		opts.MaxBytes = cfg.maxBytes
	}
	dir := streamDirFor(b.streamDir, q.vhost.name, q.name)
	l, err := streamlog.Open(dir, opts)
	if err != nil {
		b.log.Error("cannot open a stream's log", "stream", q.name, "vhost", q.vhost.name, "dir", dir, "err", err)
		return nil, errorf(CodeInternal, "cannot open the log of stream '%s' in vhost '%s': %v", q.name, q.vhost.name, err)
	}
	if rep := l.Report(); len(rep.Corruptions) > 0 || rep.TruncatedBytes > 0 {
		b.log.Warn("stream recovered with damage", "stream", q.name, "vhost", q.vhost.name,
			"truncated_bytes", rep.TruncatedBytes, "corruptions", len(rep.Corruptions))
	}
	s := &streamQueue{Queue: q, log: l, cfg: cfg, policy: p, groupOf: make(map[*Consumer]*streamGroup),
		groups: make(map[string]*streamGroup), unacked: make(map[uint64]streamHeld), stop: make(chan struct{})}
	s.appended = s.onAppended
	b.streams.Add(1)
	if cfg.maxAge > 0 {
		s.wg.Add(1)
		go s.retention(cfg.maxAge)
	}
	return s, nil
}

// retention applies x-max-age on a timer, so that an idle stream loses
// its old segments too (size retention runs whenever a segment rolls).
func (q *streamQueue) retention(maxAge time.Duration) {
	defer q.wg.Done()
	every := min(max(maxAge/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-q.stop:
			return
		case <-t.C:
			if _, err := q.log.ApplyRetention(); err != nil {
				q.vhost.broker.log.Warn("stream retention failed", "stream", q.name, "err", err)
			}
		}
	}
}

// enqueue appends m to the stream. The message is not in the broker's
// shared log (the handle's logged is false); the publisher waits for this
// stream's barrier instead (Publisher.noteStreams).
func (q *streamQueue) enqueue(m *Message, _ int64) (ok, rejected, congested, stored bool) {
	if q.gone.Load() {
		return false, false, false, false
	}
	rec := encodeStreamRecord(m)
	q.submitMu.Lock()
	q.submitted.Add(1)
	q.log.AppendOneAsync(rec, q.vhost.broker.now(), q.appended)
	q.submitMu.Unlock()
	q.published.Add(1)
	return true, false, q.log.PendingBytes() > maxPendingLog, false
}

// onAppended runs on the stream's committer once an append is durable (or
// failed): it releases the confirms waiting for it. Waiters are kept in
// target order, so this looks at the due ones only.
func (q *streamQueue) onAppended(_ uint64, err error) {
	q.doneMu.Lock()
	q.completed++
	if err != nil && q.failedAt == 0 {
		q.failedAt, q.failErr = q.completed, err
		q.vhost.broker.log.Error("stream append failed: publishes to this stream are refused until the server restarts", "stream", q.name, "vhost", q.vhost.name, "err", err)
	}
	due := q.due[:0]
	for q.whead < len(q.waiters) && q.waiters[q.whead].target <= q.completed {
		due = append(due, q.waiters[q.whead])
		q.waiters[q.whead] = streamWaiter{}
		q.whead++
	}
	if q.whead == len(q.waiters) {
		q.waiters, q.whead = q.waiters[:0], 0
	} else if q.whead > 1024 && q.whead > len(q.waiters)/2 {
		n := copy(q.waiters, q.waiters[q.whead:])
		clear(q.waiters[n:])
		q.waiters, q.whead = q.waiters[:n], 0
	}
	failedAt, failErr := q.failedAt, q.failErr
	q.doneMu.Unlock()
	for i, w := range due {
		w.done(errUpTo(w.target, failedAt, failErr))
		due[i] = streamWaiter{}
	}
	q.due = due[:0] // only the committer goroutine runs this
}

func errUpTo(target, failedAt uint64, err error) error {
	if failedAt != 0 && failedAt <= target {
		return err
	}
	return nil
}

// barrier calls done once every append submitted so far is durable, with
// the error of the first that failed among them. done must not block.
func (q *streamQueue) barrier(done func(error)) {
	target := q.submitted.Load()
	q.doneMu.Lock()
	if q.completed >= target {
		err := errUpTo(target, q.failedAt, q.failErr)
		q.doneMu.Unlock()
		done(err)
		return
	}
	// Keep target order; concurrent publishers register almost in order,
	// so this is an append.
	i := len(q.waiters)
	for i > q.whead && q.waiters[i-1].target > target {
		i--
	}
	q.waiters = slices.Insert(q.waiters, i, streamWaiter{target: target, done: done})
	q.doneMu.Unlock()
}

// flowChan: a stream slows its publishers only while its disk is behind.
func (q *streamQueue) flowChan(Owner) <-chan struct{} {
	if q.log.PendingBytes() <= maxPendingLog {
		return nil
	}
	return q.log.Changed()
}

func (q *streamQueue) get(Owner, bool) (Delivery, bool, error) {
	return Delivery{}, false, errorf(CodeNotImplemented, "basic.get not supported by stream queue '%s' in vhost '%s'", q.name, q.vhost.name)
}

func (q *streamQueue) purgeRefused() error {
	return errorf(CodeNotImplemented, "queue.purge not supported by stream queue '%s' in vhost '%s': messages leave a stream by retention only", q.name, q.vhost.name)
}

func (q *streamQueue) purge() int { return 0 }

func (q *streamQueue) touch([]uint64) {} // streams have no consumer timeout

func (q *streamQueue) used() {}

func (q *streamQueue) stats() QueueStats {
	st := q.log.Stats()
	q.mu.Lock()
	s := QueueStats{Ready: int(st.NextOffset - st.FirstOffset), ReadyBytes: st.Bytes, Unacked: len(q.unacked), Consumers: len(q.consumers)}
	q.mu.Unlock()
	s.Published, s.Delivered, s.Acks = q.published.Load(), q.delivered.Load(), q.acked.Load()
	return s
}

func (q *streamQueue) consumerList() []*Consumer {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*Consumer(nil), q.consumers...)
}

func (q *streamQueue) policyName() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.policy == nil {
		return ""
	}
	return q.policy.Name
}

// applyPolicy records the policy's name; a stream's retention comes from
// its declaration arguments only (policy keys are not applied to streams).
func (q *streamQueue) applyPolicy(p *Policy) {
	q.mu.Lock()
	q.policy = p
	q.mu.Unlock()
}

// markDeleted cancels the consumers, stops the readers and removes the
// stream's files.
func (q *streamQueue) markDeleted() (int, bool) {
	n, ok := q.shutdown(true)
	if !ok {
		return 0, false
	}
	if err := q.log.Delete(); err != nil {
		q.vhost.broker.log.Warn("cannot remove a deleted stream's files", "stream", q.name, "err", err)
	}
	return n, true
}

// close makes what is pending durable and closes the log (the broker stops).
func (q *streamQueue) close() {
	if _, ok := q.shutdown(false); !ok {
		return
	}
	if err := q.log.Close(); err != nil {
		q.vhost.broker.log.Warn("closing a stream failed", "stream", q.name, "err", err)
	}
}

// shutdown ends the stream's consumers (cancelled tells their sinks) and
// goroutines; it reports false if that was done already.
func (q *streamQueue) shutdown(cancel bool) (int, bool) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return 0, false
	}
	q.deleted = true
	q.gone.Store(true)
	n := int(q.log.Stats().NextOffset - q.log.Stats().FirstOffset)
	consumers := q.consumers
	q.consumers = nil
	for _, c := range consumers {
		c.cancelled.Store(true)
		if cancel {
			c.sink.Cancelled(c)
		}
	}
	close(q.stop)
	q.mu.Unlock()
	for _, c := range consumers {
		if c.limiter != nil {
			c.limiter.remove(c)
		}
	}
	q.wg.Wait()
	q.vhost.broker.streams.Add(-1)
	return n, true
}

func (q *streamQueue) String() string {
	return fmt.Sprintf("stream '%s' in vhost '%s'", q.name, q.vhost.name)
}
