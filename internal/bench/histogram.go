package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout: log-linear buckets over nanoseconds, in the style of
// HdrHistogram. Values below 2*histSub are stored exactly (1 ns buckets);
// above that, every power-of-two range is split into histSub linear
// sub-buckets, so a bucket is never wider than 1/histSub (≈0.4%) of the values
// it holds. With histMaxBits = 36 the range is 0 .. ~68.7 s; larger values are
// clamped into the last bucket (Max is still tracked exactly).
const (
	histSubBits  = 8
	histSub      = 1 << histSubBits                            // 256 sub-buckets per power of two
	histExact    = 2 * histSub                                 // values < 512 ns are exact
	histMaxBits  = 36                                          // largest trackable value < 2^36 ns
	histMaxValue = 1<<histMaxBits - 1                          // ≈ 68.7 s
	histBuckets  = (histMaxBits-histSubBits)*histSub + histSub // 7424
)

// histIndex maps a value in nanoseconds to its bucket.
func histIndex(v uint64) int {
	if v < histExact {
		return int(v)
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	shift := bits.Len64(v) - (histSubBits + 1)
	return shift<<histSubBits + int(v>>uint(shift))
}

// histBounds returns the smallest and largest value that map to bucket i.
func histBounds(i int) (lo, hi uint64) {
	if i < histExact {
		return uint64(i), uint64(i)
	}
	shift := i>>histSubBits - 1
	m := uint64(i - shift<<histSubBits) // in [histSub, 2*histSub)
	return m << uint(shift), (m+1)<<uint(shift) - 1
}

// Histogram records latencies. Record is allocation-free and safe to call
// from one goroutine while others take snapshots (every counter is atomic;
// recording from several goroutines at once is also safe, just contended).
// The zero value is ready to use. A Histogram is ~60 KiB; allocate it with
// new and do not copy it.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	sum    atomic.Uint64
	max    atomic.Uint64
}

// Record adds one observation. Negative durations (clock skew between hosts)
// are recorded as 0.
func (h *Histogram) Record(d time.Duration) {
	var v uint64
	if d > 0 {
		v = uint64(d)
	}
	h.counts[histIndex(v)].Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Snapshot returns a point-in-time copy of h.
func (h *Histogram) Snapshot() *Snapshot {
	s := NewSnapshot()
	s.Add(h)
	return s
}

// Snapshot is a plain (non-atomic) copy of one or more histograms, used for
// merging, interval differences and percentile queries.
type Snapshot struct {
	counts []uint64
	n      uint64
	sum    uint64
	max    uint64
}

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot { return &Snapshot{counts: make([]uint64, histBuckets)} }

// Reset empties s without releasing memory.
func (s *Snapshot) Reset() {
	clear(s.counts)
	s.n, s.sum, s.max = 0, 0, 0
}

// Add merges the current contents of h into s.
func (s *Snapshot) Add(h *Histogram) {
	for i := range h.counts {
		if c := h.counts[i].Load(); c != 0 {
			s.counts[i] += c
			s.n += c
		}
	}
	s.sum += h.sum.Load()
	s.max = max(s.max, h.max.Load())
}

// Merge adds the contents of o into s.
func (s *Snapshot) Merge(o *Snapshot) {
	for i, c := range o.counts {
		s.counts[i] += c
	}
	s.n += o.n
	s.sum += o.sum
	s.max = max(s.max, o.max)
}

// CopyFrom makes s an exact copy of o.
func (s *Snapshot) CopyFrom(o *Snapshot) {
	copy(s.counts, o.counts)
	s.n, s.sum, s.max = o.n, o.sum, o.max
}

// Count is the number of recorded values.
func (s *Snapshot) Count() uint64 { return s.n }

// Max is the largest recorded value (exact).
func (s *Snapshot) Max() time.Duration { return time.Duration(s.max) }

// Mean is the arithmetic mean of the recorded values (exact).
func (s *Snapshot) Mean() time.Duration {
	if s.n == 0 {
		return 0
	}
	return time.Duration(s.sum / s.n)
}

// Min is the lower bound of the lowest non-empty bucket.
func (s *Snapshot) Min() time.Duration {
	for i, c := range s.counts {
		if c != 0 {
			lo, _ := histBounds(i)
			return time.Duration(lo)
		}
	}
	return 0
}

// Quantile returns the value at quantile q (0 < q <= 1): the largest value
// equivalent (same bucket) to the observation of rank ceil(q*n), capped at
// the exact maximum. Like HdrHistogram, it errs on the high side by at most
// one bucket width (≈0.4%).
func (s *Snapshot) Quantile(q float64) time.Duration {
	return quantile(s.counts, s.n, s.max, nil, q)
}

// QuantileSince is Quantile over the values recorded since prev was taken
// (s must be a later snapshot of the same histograms). It does not allocate.
func (s *Snapshot) QuantileSince(prev *Snapshot, q float64) time.Duration {
	return quantile(s.counts, s.n-prev.n, s.max, prev.counts, q)
}

func quantile(counts []uint64, n, maxV uint64, minus []uint64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	if q >= 1 || math.IsNaN(q) {
		return time.Duration(maxV)
	}
	rank := uint64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range counts {
		if minus != nil {
			c -= minus[i]
		}
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			if i == len(counts)-1 {
				return time.Duration(maxV) // clamped values: only the max is known
			}
			_, hi := histBounds(i)
			return time.Duration(min(hi, maxV))
		}
	}
	return time.Duration(maxV)
}

// Summary condenses s into the figures reported in a Result.
func (s *Snapshot) Summary() LatencySummary {
	return LatencySummary{
		Count: s.n,
		Min:   s.Min(),
		Mean:  s.Mean(),
		P50:   s.Quantile(0.50),
		P90:   s.Quantile(0.90),
		P99:   s.Quantile(0.99),
		P999:  s.Quantile(0.999),
		Max:   s.Max(),
	}
}

// LatencySummary holds the percentiles of one latency distribution.
// Durations are in nanoseconds in JSON.
type LatencySummary struct {
	Count uint64        `json:"samples"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}
