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
