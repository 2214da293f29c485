package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const testDir = "/data"

func openT(t testing.TB, fs FS, opts Options) (*Log, RecoveryReport) {
	t.Helper()
	opts.FS = fs
	l, rep, err := Open(testDir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l, rep
}

func body(id uint64) []byte {
	return []byte(fmt.Sprintf("body-%d-%s", id, strings.Repeat("x", int(id%7))))
}
func meta(id uint64) []byte { return []byte(fmt.Sprintf("meta-%d", id)) }

// publish returns the records for message id enqueued to queues at seq.
func publish(id, seq uint64, queues ...uint64) []Record {
	recs := []Record{{Kind: KindMessage, MessageID: id, Meta: meta(id), Body: body(id)}}
	for _, q := range queues {
		recs = append(recs, Record{Kind: KindEnqueue, QueueID: q, MessageID: id, Seq: seq})
	}
	return recs
}

func mustAppend(t testing.TB, l *Log, recs ...Record) {
	t.Helper()
	if err := <-l.Append(recs...); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func ack(q, id uint64) Record { return Record{Kind: KindAck, QueueID: q, MessageID: id} }

// recovered returns queue -> message ids in order.
func recovered(l *Log) map[uint64][]uint64 {
	out := map[uint64][]uint64{}
	for q, es := range l.Recovered() {
		for _, e := range es {
			out[q] = append(out[q], e.MessageID)
		}
	}
	return out
}

func checkBodies(t testing.TB, l *Log, got map[uint64][]uint64) {
	t.Helper()
	for _, ids := range got {
		for _, id := range ids {
			m, b, err := l.ReadMessage(id)
			if err != nil {
				t.Fatalf("ReadMessage(%d): %v", id, err)
			}
			if !bytes.Equal(m, meta(id)) || !bytes.Equal(b, body(id)) {
				t.Fatalf("ReadMessage(%d) = %q, %q", id, m, b)
			}
		}
	}
}

func TestRoundTrip(t *testing.T) {
	fs := NewMemFS()
	l, rep := openT(t, fs, Options{})
	if rep.Segments != 0 || rep.Messages != 0 {
		t.Fatalf("fresh report %+v", rep)
	}
	// Message 1 fans out to queues 10 and 20: its body is stored once.
	mustAppend(t, l, publish(1, 1, 10, 20)...)
	mustAppend(t, l, publish(2, 2, 10)...)
	mustAppend(t, l, publish(3, 3, 20)...)
	mustAppend(t, l, publish(4, 4, 10, 20)...)
	mustAppend(t, l, ack(10, 1), ack(20, 3), Record{Kind: KindRedelivered, QueueID: 10, MessageID: 4})
	mustAppend(t, l, publish(5, 5, 30)...)
	mustAppend(t, l, Record{Kind: KindQueueDelete, QueueID: 30})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, rep = openT(t, fs, Options{})
	defer l.Close()
	want := map[uint64][]uint64{10: {2, 4}, 20: {1, 4}}
	got := recovered(l)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("recovered %v, want %v", got, want)
	}
	if rep.Queues != 2 || rep.Messages != 3 || rep.Entries != 4 || rep.CorruptRecords != 0 || rep.TruncatedBytes != 0 {
		t.Fatalf("report %+v", rep)
	}
	checkBodies(t, l, got)
	if l.MaxMessageID() != 5 {
		t.Fatalf("MaxMessageID = %d, want 5", l.MaxMessageID())
	}
	for q, es := range l.Recovered() {
		for _, e := range es {
			if e.Redelivered != (q == 10 && e.MessageID == 4) {
				t.Fatalf("queue %d entry %+v: wrong redelivered flag", q, e)
			}
		}
	}
	// Acked everywhere (1 is still in 20) or deleted: not readable.
	for _, id := range []uint64{3, 5} {
		if _, _, err := l.ReadMessage(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ReadMessage(%d) err = %v, want ErrNotFound", id, err)
		}
	}
}

func TestAppendValidation(t *testing.T) {
	l, _ := openT(t, NewMemFS(), Options{MaxRecordSize: 100})
	defer l.Close()
	if err := <-l.Append(Record{Kind: KindEnqueue, QueueID: 1, MessageID: 99}); !errors.Is(err, ErrUnknownMessage) {
		t.Fatalf("enqueue of unknown message: %v", err)
	}
	if err := <-l.Append(Record{Kind: kindCommit}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("commit record: %v", err)
	}
	if err := <-l.Append(Record{Kind: KindMessage, MessageID: 1, Body: make([]byte, 200)}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("oversized record: %v", err)
	}
	// The log still works after rejected appends.
	mustAppend(t, l, publish(1, 1, 1)...)
}

func TestAppendAfterClose(t *testing.T) {
	l, _ := openT(t, NewMemFS(), Options{})
	l.Close()
	if err := <-l.Append(publish(1, 1, 1)...); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := l.Compact(); !errors.Is(err, ErrClosed) {
		t.Fatalf("compact after close: %v", err)
	}
}

// TestGroupCommit holds the first fsync until many appenders have queued:
// they must all share the next write+fsync.
func TestGroupCommit(t *testing.T) {
	fs := NewMemFS()
	l, _ := openT(t, fs, Options{})
	defer l.Close()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fs.SetSyncHook(func() {
		once.Do(func() { close(entered); <-release })
	})
	before := l.Stats()
	first := l.Append(publish(1, 1, 1)...)
	<-entered // the committer is fsyncing the lone first append
	const n = 100
	var queued, done sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		queued.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			id := uint64(i + 2)
			l.AppendFunc(publish(id, id, 1), func(err error) { errs <- err })
			queued.Done()
		}()
	}
	queued.Wait()
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	done.Wait()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	s := l.Stats()
	if got := s.Batches - before.Batches; got != 2 {
		t.Fatalf("%d appends took %d batches, want 2", n+1, got)
	}
	if s.Appends-before.Appends != n+1 {
		t.Fatalf("appends = %d", s.Appends-before.Appends)
	}
}

// TestGroupCommitConcurrent: free-running appenders on a real directory
// need fewer fsyncs than appends.
func TestGroupCommitConcurrent(t *testing.T) {
	l, _, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const workers, each = 16, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := uint64(w*each + i + 1)
				if err := <-l.Append(publish(id, id, uint64(w))...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s := l.Stats()
	if s.Appends != workers*each || s.Batches >= s.Appends {
		t.Fatalf("stats %+v: want fewer batches than appends", s)
	}
	t.Logf("%d appends in %d batches", s.Appends, s.Batches)
}

func TestSyncErrorFailsLog(t *testing.T) {
	fs := NewMemFS()
	l, _ := openT(t, fs, Options{})
	mustAppend(t, l, publish(1, 1, 1)...)
	boom := errors.New("EIO")
	fs.SetSyncError(boom)
	if err := <-l.Append(publish(2, 2, 1)...); !errors.Is(err, boom) {
		t.Fatalf("append during fsync error: %v", err)
	}
	fs.SetSyncError(nil)
	// The page cache state is unknown: the log refuses until reopened.
	if err := <-l.Append(publish(3, 3, 1)...); !errors.Is(err, boom) {
		t.Fatalf("append after fsync error: %v", err)
	}
	if !errors.Is(l.Err(), boom) {
		t.Fatalf("Err() = %v", l.Err())
	}
	if err := l.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close() = %v", err)
	}
	l, _ = openT(t, fs, Options{})
	defer l.Close()
	got := recovered(l)[1]
	// 1 was durable; 2 was written but its fsync failed: either outcome is
	// allowed for it. 3 was never written.
	if len(got) == 0 || got[0] != 1 || slices.Contains(got, 3) {
		t.Fatalf("after reopen queue 1 = %v", got)
	}
	mustAppend(t, l, publish(4, 4, 1)...)
}

func TestWriteErrorFailsLog(t *testing.T) {
	fs := NewMemFS()
	l, _ := openT(t, fs, Options{})
	boom := errors.New("ENOSPC")
	fs.SetWriteError(boom)
	if err := <-l.Append(publish(1, 1, 1)...); !errors.Is(err, boom) {
		t.Fatalf("append during write error: %v", err)
	}
	fs.SetWriteError(nil)
	l.Close()
	l, _ = openT(t, fs, Options{})
	defer l.Close()
	mustAppend(t, l, publish(2, 2, 1)...)
	if got := recovered(l)[1]; !slices.Equal(got, []uint64{2}) {
		t.Fatalf("queue 1 = %v", got)
	}
}

func segFiles(t testing.TB, fs FS) []string {
	t.Helper()
	names, err := fs.ReadDir(testDir)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestSegmentDeletion(t *testing.T) {
	fs := NewMemFS()
	l, _ := openT(t, fs, Options{SegmentSize: 1024})
	for id := uint64(1); id <= 100; id++ {
		mustAppend(t, l, publish(id, id, 1, 2)...)
	}
	if n := len(segFiles(t, fs)); n < 5 {
		t.Fatalf("only %d segments for 100 messages of ~60 bytes in 1 KiB segments", n)
	}
	// Ack in queue 1 only: every message is still live in queue 2.
	for id := uint64(1); id <= 100; id++ {
		mustAppend(t, l, ack(1, id))
	}
	mustAppend(t, l)
	if s := l.Stats(); s.Deleted != 0 {
		t.Fatalf("deleted %d segments holding live messages", s.Deleted)
	}
	for id := uint64(1); id <= 100; id++ {
		mustAppend(t, l, ack(2, id))
	}
	// Segments are deleted after the appenders are notified: an empty
	// Append is a barrier behind that work.
	mustAppend(t, l)
	files := segFiles(t, fs)
	if len(files) > 2 {
		t.Fatalf("after acking everything %d segments remain: %v", len(files), files)
	}
	l.Close()
	l, rep := openT(t, fs, Options{SegmentSize: 1024})
	defer l.Close()
	if rep.Entries != 0 || rep.Messages != 0 {
		t.Fatalf("acked messages recovered: %+v", rep)
	}
}

// TestAckPinsSegment: a segment holding only acks must outlive the older
// segment holding the acked enqueues, or recovery would resurrect them.
func TestAckPinsSegment(t *testing.T) {
	fs := NewMemFS()
	opts := Options{SegmentSize: 512}
	l, _ := openT(t, fs, opts)
	mustAppend(t, l, publish(1, 1, 1)...)
	mustAppend(t, l, publish(2, 2, 1)...)   // keeps the first segment alive
	for id := uint64(100); id < 120; id++ { // fill later segments
		mustAppend(t, l, publish(id, id, 2)...)
	}
	mustAppend(t, l, ack(1, 1))
	for id := uint64(100); id < 120; id++ {
		mustAppend(t, l, ack(2, id))
	}
	l.Close()
	l, _ = openT(t, fs, opts)
	defer l.Close()
	if got := recovered(l); fmt.Sprint(got) != fmt.Sprint(map[uint64][]uint64{1: {2}}) {
		t.Fatalf("recovered %v", got)
	}
}

func TestCompaction(t *testing.T) {
	fs := NewMemFS()
	opts := Options{SegmentSize: 4096}
	l, _ := openT(t, fs, opts)
	for id := uint64(1); id <= 200; id++ {
		mustAppend(t, l, publish(id, id, 1)...)
	}
	first := segFiles(t, fs)[0]
	// Keep one straggler in the first segment, ack the rest.
	for id := uint64(2); id <= 200; id++ {
		mustAppend(t, l, ack(1, id))
	}
	mustAppend(t, l)
	if segFiles(t, fs)[0] != first {
		t.Fatal("first segment deleted while it holds a live message")
	}
	mustAppend(t, l, Record{Kind: KindRedelivered, QueueID: 1, MessageID: 1})
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if files := segFiles(t, fs); files[0] == first || len(files) > 2 {
		t.Fatalf("after compaction segments = %v", files)
	}
	checkBodies(t, l, map[uint64][]uint64{1: {1}})
	if s := l.Stats(); s.Compacts == 0 {
		t.Fatalf("stats %+v", s)
	}
	l.Close()
	l, _ = openT(t, fs, opts)
	defer l.Close()
	var got []Entry
	for _, es := range l.Recovered() {
		got = append(got, es...)
	}
	if len(got) != 1 || got[0] != (Entry{MessageID: 1, Seq: 1, Redelivered: true}) {
		t.Fatalf("recovered %+v", got)
	}
	checkBodies(t, l, map[uint64][]uint64{1: {1}})
}

func TestBackgroundCompaction(t *testing.T) {
	fs := NewMemFS()
	opts := Options{SegmentSize: 2048, CompactInterval: time.Millisecond}
	l, _ := openT(t, fs, opts)
	defer l.Close()
	for id := uint64(1); id <= 100; id++ {
		mustAppend(t, l, publish(id, id, 1)...)
	}
	for id := uint64(2); id <= 100; id++ {
		mustAppend(t, l, ack(1, id))
	}
	// The loop runs on every tick; wait for the straggler's segment to go.
	for l.Stats().Compacts == 0 {
		mustAppend(t, l) // an empty append is a cheap round trip
	}
	checkBodies(t, l, map[uint64][]uint64{1: {1}})
}

func TestRecoveryProgressLogged(t *testing.T) {
	fs := NewMemFS()
	l, _ := openT(t, fs, Options{SegmentSize: 256})
	for id := uint64(1); id <= 20; id++ {
		mustAppend(t, l, publish(id, id, 1)...)
	}
	l.Close()
	var logs bytes.Buffer
	var mu sync.Mutex
	clock := &fakeClock{}
	l, rep := openT(t, fs, Options{
		SegmentSize: 256,
		Logger:      slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
		Now:         clock.now,
	})
	l.Close()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "store: recovering"); n < 2 {
		t.Fatalf("%d progress lines in:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "store: recovered") || rep.Duration <= 0 {
		t.Fatalf("no report logged (%+v):\n%s", rep, logs.String())
	}
}

func TestFreeSpace(t *testing.T) {
	n, err := FreeSpace(t.TempDir())
	if err != nil || n == 0 {
		t.Fatalf("FreeSpace = %d, %v", n, err)
	}
	if _, err := FreeSpace(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("FreeSpace of a missing dir succeeded")
	}
}

func TestDump(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, publish(7, 1, 3)...)
	mustAppend(t, l, ack(3, 7))
	l.Close()
	var out bytes.Buffer
	if err := Dump(&out, dir); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"segment 00000000000000000001.seg", "message     id=7", "enqueue     queue=3 id=7 seq=1", "ack         queue=3 id=7", "commit      records=2"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("dump lacks %q:\n%s", want, out.String())
		}
	}
}

// fakeClock advances 600ms per reading, so recovery "takes" seconds.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(600 * time.Millisecond)
	return c.t
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// TestMain fails the run if a Log's committer goroutine outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		buf := make([]byte, 1<<20)
		if st := string(buf[:runtime.Stack(buf, true)]); strings.Contains(st, "store.(*Log).run") {
			fmt.Fprintf(os.Stderr, "leaked committer goroutines:\n%s\n", st)
			code = 1
		}
	}
	os.Exit(code)
}
