package bench

import "testing"

func feed(t *Tracker, producer uint32, seqs ...uint64) {
	for _, s := range seqs {
		t.Observe(producer, s, false)
	}
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestTrackerInOrderNoLoss(t *testing.T) {
	tr := NewTracker(2)
	feed(tr, 0, seqRange(0, 1000)...)
	feed(tr, 1, seqRange(0, 500)...)
	g := Tally([]*Tracker{tr}, []Expect{{Producer: 0, Count: 1000}, {Producer: 1, Count: 500}})
	want := GroupTally{Expected: 1500, Received: 1500, Unique: 1500}
	if g != want {
		t.Fatalf("got %+v, want %+v", g, want)
	}
}

func TestTrackerLoss(t *testing.T) {
	tr := NewTracker(1)
	// 0..99 sent, 10, 50..59 and 99 never arrive.
	for s := range uint64(100) {
		if s == 10 || (s >= 50 && s < 60) || s == 99 {
			continue
		}
		tr.Observe(0, s, false)
	}
	g := Tally([]*Tracker{tr}, []Expect{{Producer: 0, Count: 100}})
	if g.Lost != 12 || g.Unique != 88 || g.Duplicated != 0 || g.OutOfOrder != 0 {
		t.Fatalf("got %+v", g)
	}
}

func TestTrackerNothingReceived(t *testing.T) {
	g := Tally([]*Tracker{NewTracker(3)}, []Expect{{Producer: 2, Count: 70}})
	if g.Lost != 70 || g.Expected != 70 {
		t.Fatalf("got %+v", g)
	}
}

func TestTrackerDuplicatesAndRedeliveries(t *testing.T) {
	tr := NewTracker(1)
	feed(tr, 0, 0, 1, 2, 3)
	if !tr.Observe(0, 2, true) { // redelivered after being processed: duplicate
		t.Error("second sighting not reported as duplicate")
	}
	if tr.Observe(0, 4, true) { // redelivered but first sighting: not a duplicate
		t.Error("first sighting reported as duplicate")
	}
	feed(tr, 0, 1) // plain duplicate
	if tr.Duplicated != 2 || tr.Redelivered != 2 || tr.Received != 7 || tr.Unique != 5 {
		t.Fatalf("tracker %+v", tr)
	}
	if tr.OutOfOrder != 0 {
		t.Errorf("duplicates must not count as out of order: %d", tr.OutOfOrder)
	}
	g := Tally([]*Tracker{tr}, []Expect{{Producer: 0, Count: 5}})
	if g.Lost != 0 || g.Duplicated != 2 || g.Redelivered != 2 {
		t.Fatalf("tally %+v", g)
	}
}

func TestTrackerOutOfOrder(t *testing.T) {
	tr := NewTracker(1)
	feed(tr, 0, 0, 1, 3, 2, 4, 6, 5, 7)
	if tr.OutOfOrder != 2 {
		t.Fatalf("out of order %d, want 2 (2 after 3, 5 after 6)", tr.OutOfOrder)
	}
	// A late arrival far behind counts once.
	tr2 := NewTracker(1)
	feed(tr2, 0, 1, 2, 3, 4, 0)
	if tr2.OutOfOrder != 1 {
		t.Fatalf("out of order %d, want 1", tr2.OutOfOrder)
	}
	// Gaps alone (loss or competing consumers) are not disorder.
	tr3 := NewTracker(1)
	feed(tr3, 0, 0, 5, 9, 100)
	if tr3.OutOfOrder != 0 {
		t.Fatalf("gaps counted as out of order: %d", tr3.OutOfOrder)
	}
}

func TestTrackerCompetingConsumers(t *testing.T) {
	// Two producers, three competing consumers taking messages round-robin:
	// each consumer sees an increasing subsequence per producer.
	cs := []*Tracker{NewTracker(2), NewTracker(2), NewTracker(2)}
	n := 0
	for s := range uint64(3000) {
		for p := range uint32(2) {
			cs[n%3].Observe(p, s, false)
			n++
		}
	}
	g := Tally(cs, []Expect{{Producer: 0, Count: 3000}, {Producer: 1, Count: 3000}})
	want := GroupTally{Expected: 6000, Received: 6000, Unique: 6000}
	if g != want {
		t.Fatalf("got %+v, want %+v", g, want)
	}
}

func TestTrackerCrossConsumerDuplicate(t *testing.T) {
	a, b := NewTracker(1), NewTracker(1)
	feed(a, 0, 0, 1, 2, 3)
	feed(b, 0, 3, 4, 5) // 3 delivered to both consumers
	g := Tally([]*Tracker{a, b}, []Expect{{Producer: 0, Count: 7}})
	if g.Duplicated != 1 || g.Unique != 6 || g.Lost != 1 || g.Received != 7 {
		t.Fatalf("got %+v", g)
	}
}

func TestTrackerConfirmedExpectations(t *testing.T) {
	tr := NewTracker(1)
	// 100 published; confirms covered 0..89 and the broker nacked 5 and 7.
	// 5 arrived anyway, 7 did not; 95 arrived although unconfirmed.
	for s := range uint64(90) {
		if s == 7 || s == 40 {
			continue
		}
		tr.Observe(0, s, false)
	}
	tr.Observe(0, 95, false)
	g := Tally([]*Tracker{tr}, []Expect{{Producer: 0, Count: 90, Exclude: []uint64{5, 7}}})
	if g.Expected != 88 {
		t.Errorf("expected %d, want 88", g.Expected)
	}
	if g.Lost != 1 { // only 40: 7 was nacked, 90..99 were never confirmed
		t.Errorf("lost %d, want 1", g.Lost)
	}
}

func TestTrackerLargeAndSparseSequences(t *testing.T) {
	tr := NewTracker(1)
	feed(tr, 0, 0, 63, 64, 65, 127, 128, 200_000)
	g := Tally([]*Tracker{tr}, []Expect{{Producer: 0, Count: 129}})
	if g.Lost != 129-6 || g.Unique != 7 {
		t.Fatalf("got %+v", g)
	}
	if countBelow([]uint64{^uint64(0), ^uint64(0)}, 70) != 70 {
		t.Error("countBelow partial word")
	}
}

func TestTrackerMalformed(t *testing.T) {
	tr := NewTracker(2)
	tr.Observe(5, 1, false)             // unknown producer
	tr.Observe(0, maxTrackedSeq, false) // absurd sequence
	if tr.Malformed != 2 || tr.Received != 0 {
		t.Fatalf("tracker %+v", tr)
	}
}

func TestTrackerObserveAllocationsAmortised(t *testing.T) {
	tr := NewTracker(1)
	var seq uint64
	tr.Observe(0, 1<<16, false) // pre-grow
	if n := testing.AllocsPerRun(10000, func() {
		tr.Observe(0, seq, false)
		seq++
	}); n != 0 {
		t.Fatalf("Observe allocates %v times per call", n)
	}
}
