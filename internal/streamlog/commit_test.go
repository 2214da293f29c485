package streamlog

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// holdSyncs makes every fsync on fs wait until gate is closed; entered
// gets a value when the first one starts waiting.
func holdSyncs(fs *MemFS) (entered <-chan struct{}, gate chan struct{}) {
	in, gate := make(chan struct{}, 1), make(chan struct{})
	fs.SetSyncHook(func() {
		select {
		case in <- struct{}{}:
		default:
		}
		<-gate
	})
	return in, gate
}

// TestGroupCommit holds an fsync and checks that no appender is answered
// before it returns, that readers do not see the records early, and that
// the appenders queued meanwhile share the next fsync.
func TestGroupCommit(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{})
	defer s.Close()
	entered, gate := holdSyncs(fs)
	var answered atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	s.AppendAsync([][]byte{payload(0)}, epoch, func(uint64, error) { answered.Add(1); wg.Done() })
	<-entered // the committer is in the first append's fsync
	for i := uint64(1); i <= 50; i++ {
		wg.Add(1)
		s.AppendAsync([][]byte{payload(i)}, epoch, func(uint64, error) { answered.Add(1); wg.Done() })
	}
	syncs := fs.SyncCount()
	if n := answered.Load(); n != 0 {
		t.Fatalf("%d appenders answered before the fsync returned", n)
	}
	if got := readAllFrom(t, s, First()); len(got) != 0 {
		t.Fatalf("a reader saw %d records before they were durable", len(got))
	}
	close(gate)
	wg.Wait()
	fs.SetSyncHook(nil)
	if extra := fs.SyncCount() - syncs; extra != 2 {
		t.Fatalf("51 appends took %d fsyncs, want 2 (one in flight, one for the 50 queued)", extra)
	}
	if st := s.Stats(); st.Chunks != 2 || st.Appends != 51 {
		t.Fatalf("stats %+v", st)
	}
	checkRange(t, readAllFrom(t, s, First()), 0, 51)
}

// TestReadUnsynced holds an fsync with ReadUnsynced on: a tailing reader
// sees the chunk while it is being synced, its appender is answered only
// after the fsync returns, and a StoreOffset past it waits for it too.
func TestReadUnsynced(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{ReadUnsynced: true})
	defer s.Close()
	r, err := s.NewReader(Next())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	entered, gate := holdSyncs(fs)
	answered := make(chan error, 1)
	s.AppendAsync([][]byte{payload(0)}, epoch, func(_ uint64, err error) { answered <- err })
	<-entered // the committer is in the chunk's fsync
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	off, _, rec, err := r.NextWait(ctx)
	if err != nil || off != 0 || string(rec) != string(payload(0)) {
		t.Fatalf("tailing reader during the fsync: offset %d, %q, %v", off, rec, err)
	}
	select {
	case err := <-answered:
		t.Fatalf("appender answered (%v) before its fsync returned", err)
	default:
	}
	stored := make(chan error, 1)
	go func() { stored <- s.StoreOffset("c", 1) }()
	select {
	case err := <-stored:
		t.Fatalf("StoreOffset past an unsynced chunk returned (%v) before the chunk's fsync", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(gate)
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	fs.SetSyncHook(nil)
}

// TestConcurrentAppendersAndReaders: appenders, tailing readers and
// retention at once (run with -race).
func TestConcurrentAppendersAndReaders(t *testing.T) {
	for _, retention := range []bool{false, true} {
		opts := Options{MaxSegmentBytes: 4096}
		if retention {
			opts.MaxBytes = 16 << 10
		}
		s := openT(t, NewMemFS(), opts)
		const appenders, each = 8, 150
		total := uint64(appenders * each)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var wg sync.WaitGroup
		for r := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rd, err := s.NewReader(First())
				if err != nil {
					t.Error(err)
					return
				}
				defer rd.Close()
				var last uint64
				n := 0
				for last+1 < total || n == 0 {
					off, _, rec, err := rd.NextWait(ctx)
					if err != nil {
						t.Errorf("reader %d: %v after %d records", r, err, n)
						return
					}
					if n > 0 && off <= last || len(rec) == 0 {
						t.Errorf("reader %d: offset %d after %d", r, off, last)
						return
					}
					if !retention && off != uint64(n) {
						t.Errorf("reader %d: offset %d, want %d", r, off, n)
						return
					}
					last = off
					n++
				}
			}()
		}
		for range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					if _, err := s.Append([][]byte{payload(uint64(i))}, time.Now()); err != nil {
						t.Error(err)
						return
					}
					if i%50 == 0 {
						s.ApplyRetention()
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		if st := s.Stats(); st.NextOffset != total {
			t.Fatalf("next offset %d, want %d", st.NextOffset, total)
		}
		if err := s.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
	}
}
