package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcHeadroom is how far the heap may grow past its live data before the
// garbage collector runs, once the live data is large. Go's default
// (GOGC=100) lets the heap reach twice the live data: with millions of
// parked messages that headroom alone is hundreds of MiB of RSS.
const gcHeadroom = 128 << 20

// gcMinGoal is the smallest heap goal. A broker's live heap is often a few
// MiB; at GOGC=100 its steady allocation (a delivery allocates a little)
// then triggers several collections a second, and their pauses show in
// delivery latency (MQTT fan-out p99). Below this the collector waits.
const gcMinGoal = 64 << 20

// minGCPercent bounds the collector's CPU cost on a very large heap;
// maxGCPercent bounds the goal of a nearly empty heap.
const (
	minGCPercent = 25
	maxGCPercent = 6400
)

// gcPercentFor is the GOGC that keeps the heap goal between gcMinGoal and
// live+gcHeadroom: above 100 while the live heap is small, 100 in between,
// lower once it is large.
func gcPercentFor(live uint64) int {
	switch {
	case live > gcHeadroom:
		return max(minGCPercent, int(gcHeadroom*100/live))
	case live*2 >= gcMinGoal:
		return 100
	case live == 0:
		return maxGCPercent
	}
	return min(maxGCPercent, int((gcMinGoal-live)*100/live))
}

// tuneGC adjusts GOGC to the live heap until ctx ends, then restores it.
// It leaves the collector alone when the operator set GOGC.
func tuneGC(ctx context.Context, log *slog.Logger) (stop func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
		var idle idleCollector
		current := 100
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				debug.SetGCPercent(100)
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() != metrics.KindUint64 || sample[1].Value.Kind() != metrics.KindUint64 || sample[2].Value.Kind() != metrics.KindUint64 {
				return
			}
			live := sample[0].Value.Uint64()
			if idle.tick(sample[1].Value.Uint64(), sample[2].Value.Uint64(), live) {
				debug.FreeOSMemory()
				log.Debug("idle collection", "live_heap_mib", live>>20)
				continue
			}
			// Retune on a change of a tenth or more (or back to 100): the
			// live heap moves a little at every collection.
			if want := gcPercentFor(live); want != current && (want == 100 || abs(want-current)*10 >= current) {
				debug.SetGCPercent(want)
				log.Debug("garbage collector retuned", "gogc", want, "live_heap_mib", live>>20)
				current = want
			}
		}
	}()
	return func() { cancel(); <-done }
}

// An idle collection returns the garbage of a burst to the system once
// the broker has gone quiet. The 64 MiB minimum goal (gcMinGoal) keeps the
// collector away from a busy broker with a small live heap, but it also
// means a burst that stops short of the goal (10,000 clients connecting:
// their handshakes' garbage) is never collected and stays in RSS, and the
// goroutine stacks the burst grew are never shrunk (the collector shrinks
// them). A broker that allocates almost nothing for idleQuietTicks in a row
// and carries more than idleGarbage of uncollected heap collects once and
// hands the freed pages back (debug.FreeOSMemory); a busy one never does.
// After a burst the first quiet spell collects from idleBurstGarbage on,
// and a quiet spell that lasts idleBurstTicks collects once more whatever
// the garbage: what a burst leaves behind becomes garbage in steps (15,000
// clients connecting: their handshakes' garbage at once, then what each
// connection's reader held until it parked, a second later), and garbage
// that was live at the last collection does not show in the heap's
// growth, so without that second collection some 20 MiB would stay in RSS
// until the next burst.
const (
	idleQuietAlloc   = 1 << 20 // bytes allocated in one tick that still count as quiet
	idleQuietTicks   = 2
	idleGarbage      = 8 << 20
	idleBurstTicks   = 10
	idleBurstGarbage = 2 << 20
)

// idleCollector decides, tick by tick, whether the broker is quiet and
// holding enough garbage for an idle collection.
type idleCollector struct {
	lastAllocs uint64
	quiet      int
	// sinceBusy counts the quiet ticks since the last busy one, if there
	// was one (burst).
	sinceBusy int
	burst     bool
}

// tick takes the cumulative bytes allocated, the heap's object bytes and
// the live heap after the last collection; it reports whether to collect.
func (ic *idleCollector) tick(allocs, objects, live uint64) bool {
	delta := allocs - ic.lastAllocs
	ic.lastAllocs = allocs
	if delta > idleQuietAlloc {
		ic.quiet, ic.sinceBusy, ic.burst = 0, 0, true
		return false
	}
	ic.quiet++
	ic.sinceBusy++
	garbage := uint64(idleGarbage)
	switch {
	case ic.burst && ic.sinceBusy == idleBurstTicks:
		ic.quiet, ic.burst = 0, false
		return true
	case ic.burst:
		garbage = idleBurstGarbage
	}
	if ic.quiet < idleQuietTicks || objects < live+garbage {
		return false
	}
	ic.quiet = 0
	return true
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
