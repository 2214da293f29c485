package streamlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

const testDir = "/s"

// fakeClock is a settable clock for retention by age.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func openT(t testing.TB, fs FS, opts Options) *Stream {
	t.Helper()
	opts.FS = fs
	s, err := Open(testDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func payload(i uint64) []byte {
	return fmt.Appendf(nil, "record-%d-%s", i, bytes.Repeat([]byte{'x'}, int(i%50)))
}

func mustAppend(t testing.TB, s *Stream, ts time.Time, recs ...[]byte) uint64 {
	t.Helper()
	first, err := s.Append(recs, ts)
	if err != nil {
		t.Fatal(err)
	}
	return first
}

type readRec struct {
	off uint64
	ts  time.Time
	rec []byte
}

// readAllFrom reads from p until caught up.
func readAllFrom(t testing.TB, s *Stream, p Position) []readRec {
	t.Helper()
	r, err := s.NewReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []readRec
	for {
		off, ts, rec, err := r.Next()
		if errors.Is(err, ErrCaughtUp) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, readRec{off, ts, bytes.Clone(rec)})
	}
}

func checkRange(t testing.TB, got []readRec, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from {
		t.Fatalf("read %d records, want %d (offsets %d..%d)", len(got), to-from, from, to)
	}
	for i, g := range got {
		want := from + uint64(i)
		if g.off != want || !bytes.Equal(g.rec, payload(want)) {
			t.Fatalf("record %d: offset %d payload %q, want offset %d payload %q", i, g.off, g.rec, want, payload(want))
		}
	}
}

func TestAppendReadRestart(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{MaxSegmentBytes: 1024, IndexInterval: 200})
	var n uint64
	for i := range 40 {
		recs := [][]byte{payload(n)}
		if i%3 == 0 {
			recs = append(recs, payload(n+1), payload(n+2))
		}
		if first := mustAppend(t, s, epoch.Add(time.Duration(i)*time.Second), recs...); first != n {
			t.Fatalf("append %d got first offset %d, want %d", i, first, n)
		}
		n += uint64(len(recs))
	}
	st := s.Stats()
	if st.FirstOffset != 0 || st.NextOffset != n || st.Segments < 3 {
		t.Fatalf("stats %+v, want 0..%d in several segments", st, n)
	}
	checkRange(t, readAllFrom(t, s, First()), 0, n)
	checkRange(t, readAllFrom(t, s, AtOffset(17)), 17, n)
	checkRange(t, readAllFrom(t, s, AtOffset(n+100)), n, n)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, fs, Options{MaxSegmentBytes: 1024, IndexInterval: 200})
	defer s.Close()
	if rep := s.Report(); rep.IndexesRebuilt != 0 || rep.TruncatedBytes != 0 || len(rep.Corruptions) != 0 {
		t.Fatalf("clean restart reported %+v", rep)
	}
	if st2 := s.Stats(); st2.NextOffset != n || st2.Segments != st.Segments || st2.Bytes != st.Bytes {
		t.Fatalf("after restart %+v, before %+v", st2, st)
	}
	checkRange(t, readAllFrom(t, s, First()), 0, n)
	if first := mustAppend(t, s, epoch, payload(n)); first != n {
		t.Fatalf("append after restart got %d, want %d", first, n)
	}
	got := readAllFrom(t, s, AtOffset(n))
	checkRange(t, got, n, n+1)
	if !got[0].ts.Equal(epoch.Add(39 * time.Second)) {
		t.Fatalf("a timestamp older than the newest is stored as the newest: got %v", got[0].ts)
	}
}

func TestPositions(t *testing.T) {
	s := openT(t, NewMemFS(), Options{MaxSegmentBytes: 600, IndexInterval: 100})
	defer s.Close()
	if got := readAllFrom(t, s, Last()); len(got) != 0 {
		t.Fatalf("last on an empty stream read %v", got)
	}
	for i := range uint64(30) {
		mustAppend(t, s, epoch.Add(time.Duration(i)*time.Minute), payload(i))
	}
	mustAppend(t, s, epoch.Add(30*time.Minute), payload(30), payload(31), payload(32))
	checkRange(t, readAllFrom(t, s, Last()), 30, 33)
	checkRange(t, readAllFrom(t, s, Next()), 33, 33)
	checkRange(t, readAllFrom(t, s, AtTime(epoch.Add(12*time.Minute))), 12, 33)
	checkRange(t, readAllFrom(t, s, AtTime(epoch.Add(12*time.Minute-time.Nanosecond))), 12, 33)
	checkRange(t, readAllFrom(t, s, AtTime(epoch.Add(-time.Hour))), 0, 33)
	checkRange(t, readAllFrom(t, s, AtTime(epoch.Add(time.Hour))), 33, 33)
	for want := range uint64(33) {
		checkRange(t, readAllFrom(t, s, AtOffset(want)), want, 33)
	}
}

func TestTailingReaderWakes(t *testing.T) {
	s := openT(t, NewMemFS(), Options{})
	defer s.Close()
	r, err := s.NewReader(Next())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan uint64)
	go func() {
		for {
			off, _, _, err := r.NextWait(ctx)
			if err != nil {
				close(got)
				return
			}
			got <- off
		}
	}()
	for i := range uint64(5) {
		mustAppend(t, s, epoch, payload(i))
		if off := <-got; off != i {
			t.Fatalf("tailing reader got %d, want %d", off, i)
		}
	}
	cancel()
	if _, ok := <-got; ok {
		t.Fatal("reader kept reading after its context ended")
	}
	// Wait returns ErrClosed once the stream closes.
	r2, _ := s.NewReader(Next())
	defer r2.Close()
	done := make(chan error)
	go func() { done <- r2.Wait(context.Background()) }()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close: %v", err)
	}
}

func TestRetentionBySize(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{MaxSegmentBytes: 1000, MaxBytes: 3000})
	defer s.Close()
	// A reader in the first segment keeps reading it after retention.
	old, err := s.NewReader(First())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	mustAppend(t, s, epoch, payload(0))
	if off, _, _, err := old.Next(); err != nil || off != 0 {
		t.Fatalf("first read: %d %v", off, err)
	}
	for i := uint64(1); i < 200; i++ {
		mustAppend(t, s, epoch, payload(i))
	}
	// Appenders are answered before the roll's retention runs; this
	// waits for it (and finds nothing more to do).
	if n, err := s.ApplyRetention(); n != 0 || err != nil {
		t.Fatalf("retention left work: %d, %v", n, err)
	}
	st := s.Stats()
	if st.Bytes > 3000+1000 || st.Segments > 4 || st.FirstOffset == 0 || st.Deleted == 0 {
		t.Fatalf("size retention did not run: %+v", st)
	}
	names, _ := fs.ReadDir(testDir)
	segs := 0
	for _, n := range names {
		if _, ok := parseFileName(n, segmentSuffix); ok {
			segs++
		}
	}
	if segs != st.Segments {
		t.Fatalf("%d segment files on disk, stats say %d: %v", segs, st.Segments, names)
	}
	checkRange(t, readAllFrom(t, s, AtOffset(0)), st.FirstOffset, 200)
	// The old reader finishes its (deleted) segment, then jumps to the
	// first retained record.
	var offs []uint64
	for {
		off, _, _, err := old.Next()
		if errors.Is(err, ErrCaughtUp) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, off)
	}
	if offs[len(offs)-1] != 199 {
		t.Fatalf("old reader ended at %d", offs[len(offs)-1])
	}
	for i := 1; i < len(offs); i++ {
		if offs[i] <= offs[i-1] || (offs[i] != offs[i-1]+1 && offs[i] != st.FirstOffset) {
			t.Fatalf("old reader jumped from %d to %d (first retained %d)", offs[i-1], offs[i], st.FirstOffset)
		}
	}
}

func TestRetentionByAge(t *testing.T) {
	clock := &fakeClock{t: epoch}
	s := openT(t, NewMemFS(), Options{MaxSegmentBytes: 500, MaxAge: time.Hour, Clock: clock.Now})
	defer s.Close()
	for i := range uint64(40) {
		mustAppend(t, s, clock.Now(), payload(i))
		clock.Add(time.Minute)
	}
	st := s.Stats()
	if st.Deleted != 0 {
		t.Fatalf("nothing is an hour old yet, but %d segments were deleted", st.Deleted)
	}
	clock.Add(30 * time.Minute) // records 0..9 are now over an hour old
	n, err := s.ApplyRetention()
	if err != nil || n == 0 {
		t.Fatalf("ApplyRetention deleted %d: %v", n, err)
	}
	st = s.Stats()
	if st.FirstOffset == 0 || st.FirstOffset > 11 {
		t.Fatalf("first retained offset %d after age retention", st.FirstOffset)
	}
	clock.Add(24 * time.Hour)
	s.ApplyRetention()
	st = s.Stats()
	if st.Segments != 1 || st.NextOffset != 40 {
		t.Fatalf("the active segment must stay: %+v", st)
	}
	got := readAllFrom(t, s, First())
	if len(got) == 0 || got[len(got)-1].off != 39 {
		t.Fatalf("active segment unreadable: %v", got)
	}
}

func TestConsumerOffsets(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{})
	if err := s.StoreOffset("a", 5); err != nil {
		t.Fatal(err)
	}
	s.StoreOffset("b", 7)
	s.StoreOffset("a", 9)
	if err := s.DeleteOffset("b"); err != nil {
		t.Fatal(err)
	}
	s.StoreOffset("c", 1<<40)
	if err := s.StoreOffset("", 1); !errors.Is(err, ErrBadName) {
		t.Fatalf("empty name: %v", err)
	}
	want := map[string]uint64{"a": 9, "c": 1 << 40}
	check := func(s *Stream) {
		t.Helper()
		got := s.Offsets()
		if len(got) != len(want) {
			t.Fatalf("offsets %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("offsets %v, want %v", got, want)
			}
		}
	}
	check(s)
	s.Close()
	fs = fs.Crash(nil)
	s = openT(t, fs, Options{})
	check(s)
	// Many updates compact offsets.log and keep the newest values.
	for i := range uint64(70000) {
		s.StoreOffsetAsync(fmt.Sprint("k", i%3), i, func(err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := s.StoreOffset("a", 10); err != nil {
		t.Fatal(err)
	}
	want = map[string]uint64{"a": 10, "c": 1 << 40, "k0": 69999, "k1": 69997, "k2": 69998}
	check(s)
	data, _ := fs.ReadFile(testDir + "/" + offsetsName)
	if len(data) > 2*offsetsCompactMin {
		t.Fatalf("offsets.log is %d bytes: never compacted", len(data))
	}
	s.Close()
	s = openT(t, fs, Options{})
	defer s.Close()
	check(s)
}

func TestTooLargeAndClosed(t *testing.T) {
	s := openT(t, NewMemFS(), Options{MaxRecordSize: 100})
	if _, err := s.Append([][]byte{make([]byte, 101)}, epoch); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized append: %v", err)
	}
	s.Close()
	if _, err := s.Append([][]byte{{1}}, epoch); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := s.StoreOffset("a", 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("store offset after close: %v", err)
	}
}

func TestWriteErrorIsSticky(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{})
	mustAppend(t, s, epoch, payload(0))
	fs.SetSyncError(errors.New("disk gone"))
	if _, err := s.Append([][]byte{payload(1)}, epoch); err == nil {
		t.Fatal("append with failing fsync succeeded")
	}
	fs.SetSyncError(nil)
	if _, err := s.Append([][]byte{payload(1)}, epoch); err == nil {
		t.Fatal("append after a failed fsync succeeded without a reopen")
	}
	s.Close()
	s = openT(t, fs.Crash(nil), Options{})
	defer s.Close()
	checkRange(t, readAllFrom(t, s, First()), 0, 1)
}

func TestDelete(t *testing.T) {
	dir := t.TempDir() + "/stream"
	s, err := Open(dir, Options{MaxSegmentBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	for i := range uint64(20) {
		mustAppend(t, s, epoch, payload(i))
	}
	s.StoreOffset("a", 3)
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := (OSFS{}).ReadDir(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory still there: %v", err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.NextOffset != 0 || len(s.Offsets()) != 0 {
		t.Fatalf("a stream opened where one was deleted is not empty: %+v", st)
	}
}

// TestSeekTimeInFuture: a reader positioned after the newest timestamp
// waits for new records instead of spinning, and gets the first one.
func TestSeekTimeInFuture(t *testing.T) {
	s := openT(t, NewMemFS(), Options{})
	defer s.Close()
	for i := range uint64(5) {
		mustAppend(t, s, epoch, payload(i))
	}
	r, _ := s.NewReader(AtTime(epoch.Add(time.Hour)))
	defer r.Close()
	if _, _, _, err := r.Next(); !errors.Is(err, ErrCaughtUp) {
		t.Fatalf("Next: %v", err)
	}
	if r.Offset() != 5 {
		t.Fatalf("reader at %d after skipping older records", r.Offset())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := r.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait returned %v with nothing new", err)
	}
	mustAppend(t, s, epoch.Add(2*time.Hour), payload(5))
	if off, _, _, err := r.Next(); err != nil || off != 5 {
		t.Fatalf("Next: %d %v", off, err)
	}
}

// AppendOneAsync and AppendAsync interleave into the same offsets, and
// requests recycled after their answers carry nothing of the previous
// append into the next.
func TestAppendOneAsyncInterleaves(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rounds = 300
	var wg sync.WaitGroup
	for i := range rounds {
		wg.Add(2)
		body := fmt.Appendf(nil, "one-%d", i)
		s.AppendOneAsync(body, time.Now(), func(first uint64, err error) {
			defer wg.Done()
			if err != nil || first != uint64(3*i) {
				t.Errorf("one %d at %d: %v", i, first, err)
			}
		})
		s.AppendAsync([][]byte{fmt.Appendf(nil, "a-%d", i), fmt.Appendf(nil, "b-%d", i)}, time.Now(), func(first uint64, err error) {
			defer wg.Done()
			if err != nil || first != uint64(3*i+1) {
				t.Errorf("pair %d at %d: %v", i, first, err)
			}
		})
		if i%50 == 0 {
			wg.Wait() // let requests be recycled, then reused
		}
	}
	wg.Wait()
	r, err := s.NewReader(First())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range rounds {
		for _, want := range []string{fmt.Sprintf("one-%d", i), fmt.Sprintf("a-%d", i), fmt.Sprintf("b-%d", i)} {
			_, _, rec, err := r.Next()
			if err != nil || string(rec) != want {
				t.Fatalf("read %q %v, want %q", rec, err, want)
			}
		}
	}
}
