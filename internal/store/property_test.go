package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// model is the obvious in-memory version of the log's live state.
type model struct {
	queues map[uint64][]Entry
}

func (m *model) remove(q, id uint64) {
	m.queues[q] = slices.DeleteFunc(m.queues[q], func(e Entry) bool { return e.MessageID == id })
	if len(m.queues[q]) == 0 {
		delete(m.queues, q)
	}
}

func (m *model) live() map[uint64]bool {
	ids := map[uint64]bool{}
	for _, es := range m.queues {
		for _, e := range es {
			ids[e.MessageID] = true
		}
	}
	return ids
}

func (m *model) pick(rng *rand.Rand) (uint64, Entry, bool) {
	if len(m.queues) == 0 {
		return 0, Entry{}, false
	}
	qs := make([]uint64, 0, len(m.queues))
	for q := range m.queues {
		qs = append(qs, q)
	}
	slices.Sort(qs)
	q := qs[rng.IntN(len(qs))]
	es := m.queues[q]
	return q, es[rng.IntN(len(es))], true
}

func checkModel(t *testing.T, l *Log, m *model, maxID uint64, step int) {
	t.Helper()
	got := map[uint64][]Entry{}
	for q, es := range l.Recovered() {
		got[q] = es
	}
	if fmt.Sprint(got) != fmt.Sprint(m.queues) {
		t.Fatalf("step %d: log and model differ: %s", step, diffQueues(got, m.queues))
	}
	live := m.live()
	for id := uint64(1); id <= maxID; id++ {
		meta_, body_, err := l.ReadMessage(id)
		switch {
		case live[id] && (err != nil || string(meta_) != string(meta(id)) || string(body_) != string(body(id))):
			t.Fatalf("step %d: ReadMessage(%d) = %q, %q, %v", step, id, meta_, body_, err)
		case !live[id] && !errors.Is(err, ErrNotFound):
			t.Fatalf("step %d: ReadMessage(%d) of a dead message: %v", step, id, err)
		}
	}
}

func TestPropertyRandomOps(t *testing.T) {
	for seed := uint64(1); seed <= 12; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { propertyRun(t, seed, 600) })
	}
}

func propertyRun(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 7))
	fs := NewMemFS()
	opts := Options{SegmentSize: int64(512 + rng.IntN(2048)), CompactRatio: 0.3}
	l, _ := openT(t, fs, opts)
	defer func() { l.Close() }()
	m := &model{queues: map[uint64][]Entry{}}
	var nextID, nextSeq uint64
	for step := range steps {
		switch op := rng.IntN(100); {
		case op < 45: // publish to 1..3 distinct queues
			nextID++
			nextSeq++
			qs := rng.Perm(4)[:1+rng.IntN(3)]
			recs := []Record{{Kind: KindMessage, MessageID: nextID, Meta: meta(nextID), Body: body(nextID)}}
			for _, q := range qs {
				recs = append(recs, Record{Kind: KindEnqueue, QueueID: uint64(q), MessageID: nextID, Seq: nextSeq})
				m.queues[uint64(q)] = append(m.queues[uint64(q)], Entry{MessageID: nextID, Seq: nextSeq})
			}
			mustAppend(t, l, recs...)
		case op < 80:
			if q, e, ok := m.pick(rng); ok {
				mustAppend(t, l, ack(q, e.MessageID))
				m.remove(q, e.MessageID)
			}
		case op < 87:
			if q, e, ok := m.pick(rng); ok {
				mustAppend(t, l, Record{Kind: KindRedelivered, QueueID: q, MessageID: e.MessageID})
				i := slices.IndexFunc(m.queues[q], func(x Entry) bool { return x.MessageID == e.MessageID })
				m.queues[q][i].Redelivered = true
			}
		case op < 89:
			q := uint64(rng.IntN(4))
			mustAppend(t, l, Record{Kind: KindQueueDelete, QueueID: q})
			delete(m.queues, q)
		case op < 93:
			if err := l.Compact(); err != nil {
				t.Fatalf("step %d: Compact: %v", step, err)
			}
		case op < 97:
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, _ = openT(t, fs, opts)
			checkModel(t, l, m, nextID, step)
		default: // power loss with nothing in flight
			img := fs.Crash(nil)
			l.Close()
			fs = img
			l, _ = openT(t, fs, opts)
			checkModel(t, l, m, nextID, step)
		}
		if step%50 == 0 {
			checkModel(t, l, m, nextID, step)
		}
	}
	checkModel(t, l, m, nextID, steps)
	// Space comes back: with everything settled, only the active segment
	// (and at most the one before it) remain.
	for q, es := range m.queues {
		for _, e := range es {
			mustAppend(t, l, ack(q, e.MessageID))
		}
	}
	if err := l.Compact(); err != nil {
		t.Fatal(err)
	}
	if files := segFiles(t, fs); len(files) > 2 {
		t.Fatalf("after settling everything %d segments remain: %v", len(files), files)
	}
}

func diffQueues(got, want map[uint64][]Entry) string {
	key := func(qs map[uint64][]Entry) map[string]bool {
		k := map[string]bool{}
		for q, es := range qs {
			for _, e := range es {
				k[fmt.Sprintf("q%d:%+v", q, e)] = true
			}
		}
		return k
	}
	g, w := key(got), key(want)
	var out []string
	for k := range g {
		if !w[k] {
			out = append(out, "extra "+k)
		}
	}
	for k := range w {
		if !g[k] {
			out = append(out, "missing "+k)
		}
	}
	slices.Sort(out)
	if len(out) > 10 {
		out = out[:10]
	}
	return fmt.Sprint(out)
}
