package store

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type crashOp struct {
	ack   bool
	queue uint64
	id    uint64
	seq   uint64
}

// crashWorkload issues ops without waiting for each (so batches hold many),
// and takes a crash image of fs at the cut-th fsync (file or directory).
type crashWorkload struct {
	ops    []crashOp
	acked  []atomic.Bool
	issued atomic.Int64

	mu          sync.Mutex
	image       *MemFS
	ackedAtSnap []bool
	issuedAtSnp int
	compacts    uint64
}

func newCrashWorkload(rng *rand.Rand, n int) *crashWorkload {
	w := &crashWorkload{}
	var live []crashOp
	nextID := uint64(1)
	for len(w.ops) < n {
		if len(live) > 0 && rng.IntN(10) < 4 {
			i := rng.IntN(len(live))
			op := live[i]
			live = append(live[:i], live[i+1:]...)
			w.ops = append(w.ops, crashOp{ack: true, queue: op.queue, id: op.id})
			continue
		}
		id := nextID
		nextID++
		op := crashOp{queue: uint64(1 + rng.IntN(3)), id: id, seq: id}
		w.ops = append(w.ops, op)
		live = append(live, op)
	}
	w.acked = make([]atomic.Bool, len(w.ops))
	return w
}

func (w *crashWorkload) snapshot(fs *MemFS, tear *rand.Rand) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.image != nil {
		return
	}
	// Read the acked set before the image: whatever was acked then is
	// durable in the image.
	w.ackedAtSnap = make([]bool, len(w.ops))
	for i := range w.acked {
		w.ackedAtSnap[i] = w.acked[i].Load()
	}
	w.issuedAtSnp = int(w.issued.Load())
	w.image = fs.Crash(tear)
}

func runCrash(t *testing.T, seed uint64, cut int, tear bool) (syncs int, compacts uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := newCrashWorkload(rng, 300)
	fs := NewMemFS()
	// Background compaction runs too, so crashes also hit its copies and
	// deletions.
	opts := Options{SegmentSize: 2048, CompactRatio: 0.5, CompactInterval: time.Millisecond}
	l, _ := openT(t, fs, opts)
	var tearRng *rand.Rand
	if tear {
		tearRng = rand.New(rand.NewPCG(seed, uint64(cut)))
	}
	var n atomic.Int64
	fs.SetSyncHook(func() {
		if int(n.Add(1)) == cut {
			w.snapshot(fs, tearRng)
		}
	})
	var wg sync.WaitGroup
	for i, op := range w.ops {
		var recs []Record
		if op.ack {
			recs = []Record{ack(op.queue, op.id)}
		} else {
			recs = publish(op.id, op.seq, op.queue)
		}
		wg.Add(1)
		w.issued.Store(int64(i + 1))
		l.AppendFunc(recs, func(err error) {
			if err != nil {
				t.Errorf("op %d: %v", i, err)
			}
			w.acked[i].Store(true)
			wg.Done()
		})
		if i%37 == 0 {
			wg.Wait() // vary batch sizes
		}
	}
	wg.Wait()
	fs.SetSyncHook(nil)
	w.compacts = l.Stats().Compacts
	w.snapshot(fs, tearRng) // no cut reached: crash at the end
	l.Close()
	checkCrashImage(t, w, opts)
	return int(n.Load()), w.compacts
}

func checkCrashImage(t *testing.T, w *crashWorkload, opts Options) {
	t.Helper()
	l, rep := openT(t, w.image, opts)
	defer l.Close()
	if rep.CorruptRecords != 0 {
		t.Fatalf("a crash produced corruption reports: %+v", rep.Corruptions)
	}
	got := map[[2]uint64]Entry{}
	for q, es := range l.Recovered() {
		var last uint64
		for _, e := range es {
			if e.Seq <= last {
				t.Fatalf("queue %d out of order: %+v", q, es)
			}
			last = e.Seq
			got[[2]uint64{q, e.MessageID}] = e
		}
	}
	ackIssuedAt := map[[2]uint64]int{}
	issued := map[[2]uint64]bool{}
	for i, op := range w.ops {
		k := [2]uint64{op.queue, op.id}
		if op.ack {
			ackIssuedAt[k] = i
		} else if i < w.issuedAtSnp {
			issued[k] = true
		}
	}
	for i, op := range w.ops {
		k := [2]uint64{op.queue, op.id}
		_, present := got[k]
		switch {
		case op.ack && w.ackedAtSnap[i] && present:
			t.Fatalf("op %d: durable ack of %v, but the entry was recovered", i, k)
		case !op.ack && w.ackedAtSnap[i] && !present:
			if j, ok := ackIssuedAt[k]; !ok || j >= w.issuedAtSnp {
				t.Fatalf("op %d: durable enqueue %v lost (rep %+v)", i, k, rep)
			}
		}
	}
	for k, e := range got {
		if !issued[k] {
			t.Fatalf("recovered %v that was never issued before the crash", k)
		}
		if e.Seq != k[1] {
			t.Fatalf("entry %v has seq %d", k, e.Seq)
		}
	}
	ids := map[uint64][]uint64{}
	for k := range got {
		ids[k[0]] = append(ids[k[0]], k[1])
	}
	checkBodies(t, l, ids)
	// The recovered log accepts appends.
	mustAppend(t, l, publish(1<<40, 1<<40, 9)...)
}

// TestCrashAtEverySync crashes at every fsync of a workload (data and
// directory fsyncs, so segment creation and deletion too), with and without
// a torn unsynced tail, and checks that everything acknowledged survives.
func TestCrashAtEverySync(t *testing.T) {
	total, _ := runCrash(t, 1, -1, false)
	if total < 20 {
		t.Fatalf("workload made only %d fsyncs", total)
	}
	var compacts uint64
	for cut := 1; cut <= total+1; cut++ {
		_, c1 := runCrash(t, uint64(cut), cut, cut%2 == 0)
		_, c2 := runCrash(t, uint64(cut)+1000, cut, true)
		compacts += c1 + c2
		if t.Failed() {
			t.Fatalf("failed at cut %d", cut)
		}
	}
	t.Logf("crashed at %d cut points; %d segments compacted", 2*(total+1), compacts)
}
