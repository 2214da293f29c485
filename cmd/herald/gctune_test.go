package main

import "testing"

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1 << 20, 6300},      // goal 64 MiB
		{16 << 20, 300},      // goal 64 MiB
		{gcMinGoal / 2, 100}, // goal 64 MiB
		{gcHeadroom, 100},
		{2 * gcHeadroom, 50},
		{4 * gcHeadroom, minGCPercent},
		{100 * gcHeadroom, minGCPercent},
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

func TestIdleCollector(t *testing.T) {
	var ic idleCollector
	const mib = 1 << 20
	// Busy: allocating 50 MiB a tick never collects.
	allocs := uint64(0)
	for range 5 {
		allocs += 50 * mib
		if ic.tick(allocs, 60*mib, 10*mib) {
			t.Fatal("collected while busy")
		}
	}
	// Quiet with garbage: the second quiet tick collects, once.
	if ic.tick(allocs, 60*mib, 10*mib) {
		t.Fatal("collected after one quiet tick")
	}
	if !ic.tick(allocs, 60*mib, 10*mib) {
		t.Fatal("no collection after two quiet ticks with 50 MiB of garbage")
	}
	if ic.tick(allocs, 60*mib, 10*mib) {
		t.Fatal("collected again at once")
	}
	// After a burst: the first quiet spell collects a few MiB of garbage,
	// the idleBurstTicks-th quiet tick collects whatever the garbage, and
	// later quiet ticks wait for idleGarbage.
	ic = idleCollector{lastAllocs: allocs}
	allocs += 50 * mib
	ic.tick(allocs, 60*mib, 10*mib)
	collected := 0
	for i := 1; i <= idleBurstTicks+5; i++ {
		if ic.tick(allocs, 13*mib, 13*mib) {
			collected++
			if i != idleBurstTicks {
				t.Fatalf("collected at quiet tick %d without garbage", i)
			}
		}
	}
	if collected != 1 {
		t.Fatalf("%d collections after the burst, want the one at tick %d", collected, idleBurstTicks)
	}
	ic = idleCollector{lastAllocs: allocs}
	allocs += 50 * mib
	ic.tick(allocs, 60*mib, 10*mib)
	ic.tick(allocs, 13*mib, 10*mib)
	if !ic.tick(allocs, 13*mib, 10*mib) {
		t.Fatal("no collection of 3 MiB of garbage after a burst")
	}
	// Quiet without garbage: never collects.
	ic = idleCollector{lastAllocs: allocs}
	for range 5 {
		if ic.tick(allocs, 12*mib, 10*mib) {
			t.Fatal("collected with little garbage")
		}
	}
}
