package cluster_test

import (
	"fmt"
	"testing"
	"time"
)

// TestClusterDeclareLatency reports how long a declaration takes through
// the leader and through a follower (it waits for the commit and for its
// own node to apply it).
func TestClusterDeclareLatency(t *testing.T) {
	h := newHarness(t, 3)
	leader := h.waitLeader(nil, 5*time.Second)
	for _, nd := range h.nodes {
		const n = 20
		start := time.Now()
		for i := range n {
			if err := nd.declareQueue(fmt.Sprintf("lat-%s-%d", nd.name, i), nil); err != nil {
				t.Fatal(err)
			}
		}
		role := "follower"
		if nd == leader {
			role = "leader"
		}
		t.Logf("%s (%s): %s a declaration", nd.name, role, (time.Since(start) / n).Round(10*time.Microsecond))
	}
}
