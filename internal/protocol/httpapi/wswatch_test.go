package httpapi

import (
	"testing"
	"time"
)

// Sockets that connect in the same instant get their first pings spread
// over the second quarter of the heartbeat interval, never later than half
// an interval.
func TestFirstPingsOfSocketsThatConnectTogetherAreSpread(t *testing.T) {
	now := time.Now()
	half := 12500 * time.Millisecond
	lo, hi := now.Add(half/2).UnixNano(), now.Add(half).UnixNano()
	earliest, latest := hi, lo
	for range 1000 {
		p := firstPing(now, half)
		if p < lo || p > hi {
			t.Fatalf("first ping %v after connecting, want within [%v, %v]", time.Duration(p-now.UnixNano()), half/2, half)
		}
		earliest, latest = min(earliest, p), max(latest, p)
	}
	if spread := time.Duration(latest - earliest); spread < half/4 {
		t.Errorf("1,000 first pings spread over %v, want most of %v", spread, half/2)
	}
}
