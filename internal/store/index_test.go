package store

import (
	"maps"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// liveHeap returns the live heap after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// indexBytesPerMessage appends n small messages with one Enqueue each and
// returns the growth of the live heap per message: the cost of the in-memory
// index (the bodies are in the segment files, not on the heap). A small
// MaxBatchBytes keeps the committer's reusable batch buffer out of the figure.
func indexBytesPerMessage(t testing.TB, n int) float64 {
	l, _, err := Open(t.TempDir(), Options{MaxBatchBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	payload := make([]byte, 16)
	before := liveHeap()
	var wg sync.WaitGroup
	for id := uint64(1); id <= uint64(n); id++ {
		wg.Add(1)
		l.AppendFunc([]Record{
			{Kind: KindMessage, MessageID: id, Meta: payload[:4], Body: payload},
			{Kind: KindEnqueue, QueueID: 1, MessageID: id, Seq: id},
		}, func(err error) {
			if err != nil {
				t.Error(err)
			}
			wg.Done()
		})
		if id%5000 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	after := liveHeap()
	if got := l.Stats().Messages; got != n {
		t.Fatalf("%d live messages, want %d", got, n)
	}
	runtime.KeepAlive(l)
	return (float64(after) - float64(before)) / float64(n)
}

// TestIndexHeapPerMessage guards the index's size: 2 million parked
// messages must fit a 512 MiB broker, so the store may spend ~64 bytes on
// each (the broker's own paged entry costs ~70).
func TestIndexHeapPerMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("appends 200k messages")
	}
	const n = 200_000
	per := indexBytesPerMessage(t, n)
	t.Logf("index: %.1f heap bytes per live message (%d messages, one entry each)", per, n)
	if per > 64 {
		t.Errorf("index uses %.1f heap bytes per live message, want <= 64", per)
	}
}

// BenchmarkIndexHeap reports the index's heap bytes per live message.
func BenchmarkIndexHeap(b *testing.B) {
	for b.Loop() {
		b.ReportMetric(indexBytesPerMessage(b, 200_000), "heap-B/msg")
	}
}

// TestIndexHeapSparse logs the worst case of the chunked index: one live
// message per 64 ids (e.g. a parked queue fed 1 in 64 of the messages).
func TestIndexHeapSparse(t *testing.T) {
	const n = 50_000
	st := newState()
	seg := &segState{seq: 1, size: segmentHeaderSize}
	st.addSeg(seg)
	before := liveHeap()
	for i := uint64(1); i <= n; i++ {
		id := i * chunkIDs
		st.apply(&Record{Kind: KindMessage, MessageID: id}, seg, int64(i)*100, 60)
		st.apply(&Record{Kind: KindEnqueue, QueueID: 1, MessageID: id, Seq: i}, seg, int64(i)*100+60, enqueueFrameSize)
	}
	per := (float64(liveHeap()) - float64(before)) / n
	runtime.KeepAlive(st)
	t.Logf("sparse index: %.1f heap bytes per live message", per)
	if per > 250 {
		t.Errorf("sparse index uses %.1f heap bytes per live message, want <= 250", per)
	}
}

// TestIDIndexModel checks idIndex against a map under random operations,
// including deletes and updates from inside All.
func TestIDIndexModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	x := newIDIndex[uint64]()
	model := map[uint64]uint64{}
	// Dense runs, sparse ids and the top of the id space.
	randID := func() uint64 {
		switch rng.IntN(3) {
		case 0:
			return rng.Uint64N(300)
		case 1:
			return rng.Uint64N(1 << 20)
		default:
			return math.MaxUint64 - rng.Uint64N(200)
		}
	}
	check := func(step int) {
		t.Helper()
		if x.Len() != len(model) {
			t.Fatalf("step %d: Len %d, model %d", step, x.Len(), len(model))
		}
		seen := map[uint64]uint64{}
		for id, v := range x.All() {
			if _, dup := seen[id]; dup {
				t.Fatalf("step %d: id %d yielded twice", step, id)
			}
			seen[id] = v
		}
		if !maps.Equal(seen, model) {
			t.Fatalf("step %d: All differs from the model", step)
		}
	}
	for step := range 20_000 {
		id := randID()
		switch op := rng.IntN(10); {
		case op < 5:
			v := rng.Uint64()
			x.Set(id, v)
			model[id] = v
		case op < 8:
			x.Delete(id)
			delete(model, id)
		case op < 9:
			got, ok := x.Get(id)
			want, wok := model[id]
			if ok != wok || got != want {
				t.Fatalf("step %d: Get(%d) = %d, %v; want %d, %v", step, id, got, ok, want, wok)
			}
		default:
			// Delete some ids and update others while iterating.
			for id, v := range x.All() {
				switch rng.IntN(3) {
				case 0:
					x.Delete(id)
					delete(model, id)
				case 1:
					x.Set(id, v+1)
					model[id] = v + 1
				}
			}
		}
		if step%500 == 0 {
			check(step)
		}
	}
	check(-1)
	for id := range model {
		x.Delete(id)
	}
	if x.Len() != 0 || len(x.chunks) != 0 {
		t.Fatalf("emptied index keeps %d ids in %d chunks", x.Len(), len(x.chunks))
	}
}

// TestStateBigLocation: a Message record beyond 4 GiB into a segment (one
// huge append) does not fit msgState and is kept in the side map.
func TestStateBigLocation(t *testing.T) {
	st := newState()
	seg := &segState{seq: 1, size: segmentHeaderSize}
	st.addSeg(seg)
	cases := []struct{ id, off, size uint64 }{
		{1, 100, 50},
		{2, 5 << 30, 50},
		{3, 100, 5 << 30},
		{4, bigLoc, 50},
	}
	for _, c := range cases {
		st.apply(&Record{Kind: KindMessage, MessageID: c.id}, seg, int64(c.off), int64(c.size))
		st.apply(&Record{Kind: KindEnqueue, QueueID: 7, MessageID: c.id, Seq: c.id}, seg, 0, enqueueFrameSize)
	}
	for _, c := range cases {
		m, _ := st.msgs.Get(c.id)
		if off, size := st.loc(c.id, m); off != int64(c.off) || size != int64(c.size) {
			t.Errorf("message %d at %d+%d, want %d+%d", c.id, off, size, c.off, c.size)
		}
	}
	if len(st.big) != 3 {
		t.Errorf("%d big locations, want 3", len(st.big))
	}
	// Moving a message to a small location (compaction) drops its big one.
	st.apply(&Record{Kind: KindMessage, MessageID: 2}, seg, 200, 50)
	if len(st.big) != 2 {
		t.Errorf("%d big locations after a move, want 2", len(st.big))
	}
	for _, c := range cases {
		st.apply(&Record{Kind: KindAck, QueueID: 7, MessageID: c.id}, seg, 0, flagFrameSize)
	}
	if st.msgs.Len() != 0 || len(st.big) != 0 || seg.live != 0 || seg.liveBytes != 0 {
		t.Errorf("after acks: %d messages, %d big, live %d (%d bytes)", st.msgs.Len(), len(st.big), seg.live, seg.liveBytes)
	}
}
