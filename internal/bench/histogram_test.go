package bench

import (
	"testing"
	"time"
)

func TestHistIndexBoundsContiguous(t *testing.T) {
	// Every bucket's range starts right after the previous one ends, and
	// every value maps into the bucket whose bounds contain it.
	var prevHi uint64
	for i := 0; i < histBuckets; i++ {
		lo, hi := histBounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if hi < lo {
			t.Fatalf("bucket %d: hi %d < lo %d", i, hi, lo)
		}
		for _, v := range []uint64{lo, hi, lo + (hi-lo)/2} {
			if got := histIndex(v); got != i {
				t.Fatalf("histIndex(%d) = %d, want %d", v, got, i)
			}
		}
		if i >= histExact && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-12 {
			t.Fatalf("bucket %d [%d,%d] is wider than 1/%d of its values", i, lo, hi, histSub)
		}
		prevHi = hi
	}
	if prevHi != histMaxValue {
		t.Fatalf("last bucket ends at %d, want %d", prevHi, uint64(histMaxValue))
	}
	if got := histIndex(1 << 62); got != histBuckets-1 {
		t.Fatalf("huge value maps to %d, want last bucket %d", got, histBuckets-1)
	}
}

func within(got, want time.Duration, rel float64) bool {
	d := float64(got - want)
	if d < 0 {
		d = -d
	}
	return d <= rel*float64(want)
}

func TestHistogramUniformPercentiles(t *testing.T) {
	h := new(Histogram)
	// 1µs .. 10ms in 1µs steps: 10,000 values.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	s := h.Snapshot()
	if s.Count() != 10000 {
		t.Fatalf("count %d", s.Count())
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.5, 5000 * time.Microsecond},
		{0.9, 9000 * time.Microsecond},
		{0.99, 9900 * time.Microsecond},
		{0.999, 9990 * time.Microsecond},
		{1, 10000 * time.Microsecond},
	}
	for _, c := range cases {
		got := s.Quantile(c.q)
		if got < c.want || !within(got, c.want, 1.0/histSub) {
			t.Errorf("Quantile(%v) = %v, want %v (+0.4%%)", c.q, got, c.want)
		}
	}
	if s.Max() != 10*time.Millisecond {
		t.Errorf("Max = %v, want exactly 10ms", s.Max())
	}
	if want := 5000500 * time.Nanosecond; s.Mean() != want {
		t.Errorf("Mean = %v, want %v", s.Mean(), want)
	}
	if s.Min() != time.Microsecond {
		t.Errorf("Min = %v, want 1µs (exact below 512ns is not the case here, but 1000ns sits on a bucket boundary)", s.Min())
	}
}

func TestHistogramExactSmallValues(t *testing.T) {
	h := new(Histogram)
	for v := 0; v < 100; v++ {
		h.Record(time.Duration(v))
	}
	s := h.Snapshot()
	if got := s.Quantile(0.5); got != 49 {
		t.Errorf("p50 = %d, want 49", got)
	}
	if got := s.Quantile(0.99); got != 98 {
		t.Errorf("p99 = %d, want 98", got)
	}
	if got := s.Quantile(1); got != 99 {
		t.Errorf("p100 = %d, want 99", got)
	}
}

func TestHistogramSkewed(t *testing.T) {
	// 990 fast (100µs), 9 slow (50ms), 1 very slow (2s).
	h := new(Histogram)
	for range 990 {
		h.Record(100 * time.Microsecond)
	}
	for range 9 {
		h.Record(50 * time.Millisecond)
	}
	h.Record(2 * time.Second)
	s := h.Snapshot()
	if got := s.Quantile(0.99); !within(got, 100*time.Microsecond, 0.005) {
		t.Errorf("p99 = %v, want ~100µs", got)
	}
	if got := s.Quantile(0.995); !within(got, 50*time.Millisecond, 0.005) {
		t.Errorf("p99.5 = %v, want ~50ms", got)
	}
	if got := s.Quantile(0.999); !within(got, 50*time.Millisecond, 0.005) {
		t.Errorf("p99.9 = %v, want ~50ms", got)
	}
	if got := s.Max(); got != 2*time.Second {
		t.Errorf("max = %v, want 2s", got)
	}
}

func TestHistogramEdgeCases(t *testing.T) {
	s := new(Histogram).Snapshot()
	if s.Quantile(0.99) != 0 || s.Mean() != 0 || s.Max() != 0 {
		t.Error("empty histogram should report zeros")
	}
	h := new(Histogram)
	h.Record(-5 * time.Millisecond) // clock skew
	h.Record(10 * time.Minute)      // beyond the range: clamped bucket, exact max
	s = h.Snapshot()
	if s.Quantile(0.5) != 0 {
		t.Errorf("negative value should count as 0, p50 = %v", s.Quantile(0.5))
	}
	if s.Max() != 10*time.Minute || s.Quantile(1) != 10*time.Minute {
		t.Errorf("max = %v, p100 = %v, want 10m", s.Max(), s.Quantile(1))
	}
}

func TestSnapshotMergeAndSince(t *testing.T) {
	a, b := new(Histogram), new(Histogram)
	for range 100 {
		a.Record(time.Millisecond)
	}
	prev := NewSnapshot()
	prev.Add(a)
	prev.Add(b)
	for range 100 {
		b.Record(3 * time.Millisecond)
	}
	cur := NewSnapshot()
	cur.Add(a)
	cur.Add(b)
	if cur.Count() != 200 {
		t.Fatalf("merged count %d", cur.Count())
	}
	// Only the 3ms values were recorded since prev.
	if got := cur.QuantileSince(prev, 0.5); !within(got, 3*time.Millisecond, 0.005) {
		t.Errorf("interval p50 = %v, want ~3ms", got)
	}
	if got := cur.Quantile(0.5); !within(got, time.Millisecond, 0.005) {
		t.Errorf("overall p50 = %v, want ~1ms", got)
	}
	m := NewSnapshot()
	m.Merge(cur)
	m.Merge(prev)
	if m.Count() != 300 {
		t.Errorf("Merge count %d", m.Count())
	}
	c := NewSnapshot()
	c.CopyFrom(cur)
	if c.Quantile(0.75) != cur.Quantile(0.75) || c.Count() != cur.Count() {
		t.Error("CopyFrom mismatch")
	}
	sum := cur.Summary()
	if sum.Count != 200 || sum.Max != 3*time.Millisecond || sum.P50 == 0 {
		t.Errorf("Summary %+v", sum)
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(Histogram)
	d := time.Duration(1)
	if n := testing.AllocsPerRun(1000, func() {
		h.Record(d)
		d = d*7 + 13
	}); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := new(Histogram)
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i&0xfffff) * 100)
	}
}
