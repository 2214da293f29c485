package bench

import "testing"

func TestSoakBodyRoundTrip(t *testing.T) {
	b := soakBody("work-amqp-pub-0", 12345, 64)
	if len(b) != 64 {
		t.Fatalf("len %d", len(b))
	}
	pub, seq, ok := parseSoakBody(b)
	if !ok || pub != "work-amqp-pub-0" || seq != 12345 {
		t.Fatalf("parsed %q %d %v", pub, seq, ok)
	}
	for _, bad := range []string{"", "x", " 1 ", "p q", "p -1"} {
		if _, _, ok := parseSoakBody([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// A lane counts a confirmed message never received as lost, a second
// receipt without the redelivered flag as a duplicate, and one with it
// as allowed.
func TestLaneAccounting(t *testing.T) {
	r := newSoakReceiver("r")
	l := r.laneFor("p")
	for seq := range uint64(4) {
		l.sent(seq)
	}
	l.confirm(0)
	l.confirm(1)
	l.confirm(2)
	// 3 was published, never confirmed: arriving or not, it is no loss.
	for _, b := range [][]byte{soakBody("p", 0, 0), soakBody("p", 1, 0), soakBody("p", 1, 0), soakBody("p", 0, 0), soakBody("p", 3, 0)} {
		if !r.observe(b, false) {
			t.Fatalf("%q not observed", b)
		}
	}
	r.observe(soakBody("p", 3, 0), true)
	if r.observe(soakBody("other", 0, 0), false) {
		t.Fatal("a publisher without a lane was observed")
	}
	r.observe(soakBody("p", 9, 0), false) // never published
	got := l.result()
	want := LaneResult{Lane: "p -> r", Confirmed: 3, Received: 3, Lost: 1, Duplicates: 3, Redelivered: 1}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestLevelVerdict(t *testing.T) {
	unit := func(float64) string { return "" }
	if v := levelVerdict([]float64{1, 2, 3, 4, 5, 6, 7}, 1, 0.1, unit); v.Judged || !v.Level {
		t.Errorf("too few samples: %+v", v)
	}
	// A first-quarter peak (the heap before the first collection), then flat.
	if v := levelVerdict([]float64{200, 220, 100, 98, 101, 99, 100, 102}, 5, 0.1, unit); !v.Judged || !v.Level {
		t.Errorf("flat after a first peak: %+v", v)
	}
	if v := levelVerdict([]float64{100, 110, 120, 130, 140, 150, 160, 170}, 5, 0.1, unit); !v.Judged || v.Level {
		t.Errorf("climbing: %+v", v)
	}
}
