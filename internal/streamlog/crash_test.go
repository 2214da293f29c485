package streamlog

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashWorkload appends from one goroutine without waiting for each append
// (so chunks hold many), stores consumer positions in between, and takes a
// crash image of the file system at the cut-th fsync (file or directory).
type crashWorkload struct {
	appends  [][]uint64 // offsets of each append's records
	acked    []atomic.Bool
	posVals  []uint64 // values StoreOffset was called with, per call
	posNames []string
	posAcked []atomic.Bool

	mu           sync.Mutex
	image        *MemFS
	ackedAtSnap  []bool
	posAtSnap    []bool
	issuedAtSnap int // offsets issued so far (all below it were appended)
	issued       atomic.Int64
}

func (w *crashWorkload) snapshot(fs *MemFS, tear *rand.Rand) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.image != nil {
		return
	}
	// Read what was acknowledged before taking the image: all of it must
	// be in the image.
	w.ackedAtSnap = make([]bool, len(w.acked))
	for i := range w.acked {
		w.ackedAtSnap[i] = w.acked[i].Load()
	}
	w.posAtSnap = make([]bool, len(w.posAcked))
	for i := range w.posAcked {
		w.posAtSnap[i] = w.posAcked[i].Load()
	}
	w.issuedAtSnap = int(w.issued.Load())
	w.image = fs.Crash(tear)
}

// crashOptions: the retention runs also show readers unsynced chunks (the
// broker's mode), whose index entries reach the page cache before the
// chunk's fsync.
func crashOptions(retention bool) Options {
	o := Options{MaxSegmentBytes: 900, IndexInterval: 150, ReadUnsynced: retention}
	if retention {
		o.MaxBytes = 2500
	}
	return o
}

func runCrash(t *testing.T, seed uint64, cut int, tear, retention bool) (syncs int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	const n = 120
	w := &crashWorkload{acked: make([]atomic.Bool, n), posAcked: make([]atomic.Bool, n/4)}
	fs := NewMemFS()
	opts := crashOptions(retention)
	s := openT(t, fs, opts)
	var tearRng *rand.Rand
	if tear {
		tearRng = rand.New(rand.NewPCG(seed, uint64(cut)))
	}
	var syncCount atomic.Int64
	fs.SetSyncHook(func() {
		if int(syncCount.Add(1)) == cut {
			w.snapshot(fs, tearRng)
		}
	})
	var wg sync.WaitGroup
	next := uint64(0)
	for i := range n {
		k := 1 + rng.IntN(3)
		recs := make([][]byte, k)
		offs := make([]uint64, k)
		for j := range recs {
			offs[j] = next
			recs[j] = payload(next)
			next++
		}
		w.appends = append(w.appends, offs)
		wg.Add(1)
		w.issued.Store(int64(next))
		s.AppendAsync(recs, epoch.Add(time.Duration(i)*time.Second), func(first uint64, err error) {
			if err != nil || first != offs[0] {
				t.Errorf("append %d: first %d (want %d): %v", i, first, offs[0], err)
			}
			w.acked[i].Store(true)
			wg.Done()
		})
		if i%4 == 3 {
			p := len(w.posVals)
			w.posVals = append(w.posVals, next)
			w.posNames = append(w.posNames, fmt.Sprint("c", p%3))
			wg.Add(1)
			s.StoreOffsetAsync(w.posNames[p], next, func(err error) {
				if err != nil {
					t.Errorf("store offset %d: %v", p, err)
				}
				w.posAcked[p].Store(true)
				wg.Done()
			})
		}
		if i%29 == 0 {
			wg.Wait() // vary chunk sizes
		}
	}
	wg.Wait()
	fs.SetSyncHook(nil)
	w.snapshot(fs, tearRng) // no cut reached: crash at the end
	s.Close()
	checkCrashImage(t, w, opts)
	return int(syncCount.Load())
}

func checkCrashImage(t *testing.T, w *crashWorkload, opts Options) {
	t.Helper()
	s := openT(t, w.image, opts)
	defer s.Close()
	if rep := s.Report(); len(rep.Corruptions) != 0 {
		t.Fatalf("a crash produced damage reports: %+v", rep.Corruptions)
	}
	st := s.Stats()
	if st.NextOffset > uint64(w.issuedAtSnap) {
		t.Fatalf("recovered up to offset %d, but only %d were issued at the crash", st.NextOffset, w.issuedAtSnap)
	}
	for i, offs := range w.appends {
		if w.ackedAtSnap[i] && offs[len(offs)-1] >= st.NextOffset {
			t.Fatalf("append %d (offsets %v) was durable but the stream ends at %d", i, offs, st.NextOffset)
		}
		// An append is atomic: all its records or none.
		if offs[0] < st.NextOffset && offs[len(offs)-1] >= st.NextOffset {
			t.Fatalf("append %v recovered in part (next %d)", offs, st.NextOffset)
		}
	}
	got := readAllFrom(t, s, First())
	if len(got) > 0 && opts.MaxBytes == 0 && got[0].off != 0 {
		t.Fatalf("without retention the stream starts at %d", got[0].off)
	}
	checkRange(t, got, st.FirstOffset, st.NextOffset)
	// Consumer positions: at least the newest acknowledged value, and only
	// values that were stored.
	stored := s.Offsets()
	for name, v := range stored {
		found := false
		for p, n := range w.posNames {
			found = found || (n == name && w.posVals[p] == v)
		}
		if !found {
			t.Fatalf("position %s=%d was never stored", name, v)
		}
	}
	for p, name := range w.posNames {
		if w.posAtSnap[p] && stored[name] < w.posVals[p] {
			t.Fatalf("position %s=%d was durable but %d was recovered", name, w.posVals[p], stored[name])
		}
	}
	// The recovered stream appends at the right offset.
	if first := mustAppend(t, s, epoch, payload(st.NextOffset)); first != st.NextOffset {
		t.Fatalf("append after recovery got %d, want %d", first, st.NextOffset)
	}
}

// TestCrashAtEverySync crashes at every fsync of a workload (data, index,
// position and directory fsyncs, so segment rolls and retention too), with
// and without a torn unsynced tail, and checks that nothing acknowledged is
// lost and nothing unissued appears.
func TestCrashAtEverySync(t *testing.T) {
	for _, retention := range []bool{false, true} {
		total := runCrash(t, 1, -1, false, retention)
		if total < 30 {
			t.Fatalf("workload made only %d fsyncs", total)
		}
		for cut := 1; cut <= total+1; cut++ {
			runCrash(t, uint64(cut), cut, cut%2 == 0, retention)
			runCrash(t, uint64(cut)+1000, cut, true, retention)
			if t.Failed() {
				t.Fatalf("failed at cut %d (retention %v)", cut, retention)
			}
		}
		t.Logf("retention %v: crashed at %d cut points", retention, 2*(total+1))
	}
}

// TestTornTailEveryByte writes a stream, then cuts the active segment at
// every byte of its last chunks (as a torn write leaves it) and recovers:
// every whole chunk survives, the torn one is cut, appends resume at the
// right offset, and the index is consistent.
func TestTornTailEveryByte(t *testing.T) {
	fs := NewMemFS()
	opts := Options{IndexInterval: 100}
	s := openT(t, fs, opts)
	var ends []int64   // segment size after each chunk
	var nexts []uint64 // next offset after each chunk
	var next uint64
	for i := range 12 {
		recs := [][]byte{payload(next)}
		if i%2 == 1 {
			recs = append(recs, payload(next+1))
		}
		mustAppend(t, s, epoch.Add(time.Duration(i)*time.Second), recs...)
		next += uint64(len(recs))
		s.mu.Lock()
		ends = append(ends, s.mu.segs[len(s.mu.segs)-1].size)
		s.mu.Unlock()
		nexts = append(nexts, next)
	}
	s.Close()
	segPath := path.Join(testDir, segmentName(0))
	full, _ := fs.ReadFile(segPath)
	from := ends[len(ends)-4]
	for cut := from; cut <= int64(len(full)); cut++ {
		img := fs.Crash(nil)
		img.WriteFile(segPath, full[:cut])
		s := openT(t, img, opts)
		want := uint64(0)
		for i, e := range ends {
			if e <= cut {
				want = nexts[i]
			}
		}
		st := s.Stats()
		if st.NextOffset != want {
			t.Fatalf("cut at %d: recovered next %d, want %d", cut, st.NextOffset, want)
		}
		if rep := s.Report(); len(rep.Corruptions) != 0 {
			t.Fatalf("cut at %d: damage reported: %+v", cut, rep.Corruptions)
		}
		checkRange(t, readAllFrom(t, s, First()), 0, want)
		checkRange(t, readAllFrom(t, s, AtOffset(want-1)), want-1, want)
		mustAppend(t, s, epoch.Add(time.Hour), payload(want))
		checkRange(t, readAllFrom(t, s, First()), 0, want+1)
		s.Close()
		// And again: the cut and the new append are durable and clean.
		s = openT(t, img, opts)
		if rep := s.Report(); rep.TruncatedBytes != 0 || rep.IndexesRebuilt != 0 {
			t.Fatalf("cut at %d: second recovery found %+v", cut, rep)
		}
		checkRange(t, readAllFrom(t, s, First()), 0, want+1)
		s.Close()
	}
}

// TestIndexDamageEveryByte cuts or flips every byte of a closed segment's
// index: recovery rebuilds it and every position still reads right.
func TestIndexDamageEveryByte(t *testing.T) {
	fs := NewMemFS()
	opts := Options{MaxSegmentBytes: 2000, IndexInterval: 120}
	s := openT(t, fs, opts)
	for i := range uint64(60) {
		mustAppend(t, s, epoch.Add(time.Duration(i)*time.Second), payload(i))
	}
	s.Close()
	idxPath := path.Join(testDir, indexName(0))
	full, _ := fs.ReadFile(idxPath)
	if len(full) < fileHeaderSize+3*indexEntrySize {
		t.Fatalf("index of %d bytes is too small for this test", len(full))
	}
	check := func(img *MemFS, what string) {
		s := openT(t, img, opts)
		defer s.Close()
		if rep := s.Report(); rep.IndexesRebuilt != 1 || len(rep.Corruptions) != 0 {
			t.Fatalf("%s: report %+v", what, rep)
		}
		for _, off := range []uint64{0, 7, 13, 22} {
			checkRange(t, readAllFrom(t, s, AtOffset(off)), off, 60)
		}
		checkRange(t, readAllFrom(t, s, AtTime(epoch.Add(9*time.Second))), 9, 60)
		s.mu.Lock()
		got := s.mu.segs[0].index
		s.mu.Unlock()
		want, clean := decodeIndex(full, 0)
		if !clean || len(got) != len(want) {
			t.Fatalf("%s: rebuilt index has %d entries, the original %d", what, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: rebuilt entry %d is %+v, was %+v", what, i, got[i], want[i])
			}
		}
	}
	for cut := 0; cut < len(full); cut++ {
		img := fs.Crash(nil)
		img.WriteFile(idxPath, full[:cut])
		check(img, fmt.Sprintf("index cut at %d", cut))
	}
	for i := 0; i < len(full); i++ {
		img := fs.Crash(nil)
		bad := bytes.Clone(full)
		bad[i] ^= 0x40
		img.WriteFile(idxPath, bad)
		check(img, fmt.Sprintf("index byte %d flipped", i))
	}
	img := fs.Crash(nil)
	img.Remove(idxPath)
	img.SyncDir(testDir)
	check(img, "index missing")
}

// TestOffsetsTornEveryByte cuts offsets.log at every byte: the positions
// of every whole frame survive and a torn frame never loses the value
// stored before it.
func TestOffsetsTornEveryByte(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{})
	type step struct {
		name string
		val  uint64
		del  bool
	}
	steps := []step{{"a", 1, false}, {"b", 2, false}, {"a", 3, false}, {"b", 0, true}, {"c", 1 << 50, false}, {"a", 4, false}}
	for _, st := range steps {
		var err error
		if st.del {
			err = s.DeleteOffset(st.name)
		} else {
			err = s.StoreOffset(st.name, st.val)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	p := path.Join(testDir, offsetsName)
	full, _ := fs.ReadFile(p)
	for cut := fileHeaderSize; cut <= len(full); cut++ {
		// What the whole frames in full[:cut] say.
		want := map[string]uint64{}
		pos := fileHeaderSize
		for _, st := range steps {
			n := offsetFrameHeaderSize + len(st.name)
			if pos+n > cut {
				break
			}
			pos += n
			if st.del {
				delete(want, st.name)
			} else {
				want[st.name] = st.val
			}
		}
		img := fs.Crash(nil)
		img.WriteFile(p, full[:cut])
		s := openT(t, img, Options{})
		got := s.Offsets()
		if len(got) != len(want) {
			t.Fatalf("cut %d: positions %v, want %v", cut, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("cut %d: positions %v, want %v", cut, got, want)
			}
		}
		if err := s.StoreOffset("z", 9); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = openT(t, img, Options{})
		if v, ok := s.Offset("z"); !ok || v != 9 {
			t.Fatalf("cut %d: position stored after recovery lost", cut)
		}
		s.Close()
	}
}

// TestOffsetsCompactionCrash crashes at every fsync of a run of position
// updates that compacts offsets.log several times (write tmp, fsync,
// rename, directory fsync): every acknowledged position survives.
func TestOffsetsCompactionCrash(t *testing.T) {
	run := func(cut int) (syncs int) {
		fs := NewMemFS()
		s := openT(t, fs, Options{})
		s.offsetsCompactAt = 200
		const n = 120
		acked := make([]atomic.Bool, n)
		var image *MemFS
		var ackedAtSnap []bool
		var mu sync.Mutex
		snap := func() {
			mu.Lock()
			defer mu.Unlock()
			if image != nil {
				return
			}
			ackedAtSnap = make([]bool, n)
			for i := range acked {
				ackedAtSnap[i] = acked[i].Load()
			}
			image = fs.Crash(nil)
		}
		var count atomic.Int64
		fs.SetSyncHook(func() {
			if int(count.Add(1)) == cut {
				snap()
			}
		})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			s.StoreOffsetAsync(fmt.Sprint("c", i%4), uint64(i), func(err error) {
				if err != nil {
					t.Error(err)
				}
				acked[i].Store(true)
				wg.Done()
			})
			if i%5 == 0 {
				wg.Wait()
			}
		}
		wg.Wait()
		fs.SetSyncHook(nil)
		snap()
		s.Close()
		if data, _ := fs.ReadFile(testDir + "/" + offsetsName); len(data) > 1000 {
			t.Fatalf("offsets.log is %d bytes: never compacted", len(data))
		}
		s = openT(t, image, Options{})
		defer s.Close()
		got := s.Offsets()
		for i := range n {
			name := fmt.Sprint("c", i%4)
			if ackedAtSnap[i] && got[name] < uint64(i) {
				t.Fatalf("cut %d: %s=%d was durable, recovered %d", cut, name, i, got[name])
			}
		}
		for name, v := range got {
			if fmt.Sprint("c", v%4) != name {
				t.Fatalf("cut %d: %s=%d was never stored", cut, name, v)
			}
		}
		return int(count.Load())
	}
	total := run(-1)
	for cut := 1; cut <= total+1; cut++ {
		run(cut)
		if t.Failed() {
			return
		}
	}
	t.Logf("crashed at %d cut points", total+1)
}
