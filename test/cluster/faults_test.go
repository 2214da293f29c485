package cluster_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestClusterFaultLoop declares queues without pause through every node
// while faults hit the cluster in turn: the leader killed with SIGKILL and
// restarted, a follower paused and resumed, a follower cut off and
// healed, a follower killed and restarted. At the end every declaration
// that was acknowledged is on every node: none lost. It runs 3 cycles;
// HERALD_CLUSTER_CYCLES=20 (or more) makes it the long form:
//
//	HERALD_CLUSTER_CYCLES=20 go test -run TestClusterFaultLoop -v ./test/cluster/
func TestClusterFaultLoop(t *testing.T) {
	cycles := 3
	if s := os.Getenv("HERALD_CLUSTER_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("HERALD_CLUSTER_CYCLES=%q: want a positive number", s)
		}
		cycles = n
	}
	h := newHarness(t, 3)

	var mu sync.Mutex
	var acked []string
	attempts, failed := 0, 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// One declarer per node, so that a node stuck in a fault holds up
	// only its own.
	for k, nd := range h.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if !nd.running() {
					continue
				}
				name := fmt.Sprintf("q-%d-%05d", k, i)
				err := nd.declareQueue(name, nil)
				mu.Lock()
				attempts++
				if err == nil {
					acked = append(acked, name)
				} else {
					failed++
				}
				mu.Unlock()
			}
		}()
	}

	var failovers []time.Duration
	rng := rand.New(rand.NewPCG(1, 2))
	for c := range cycles {
		leader := h.waitLeader(nil, 15*time.Second)
		var follower *node
		for _, nd := range h.nodes {
			if nd != leader && (follower == nil || rng.IntN(2) == 0) {
				follower = nd
			}
		}
		switch c % 4 {
		case 0:
			start := time.Now()
			h.kill(leader, syscall.SIGKILL)
			h.waitLeader(leader, 15*time.Second)
			failovers = append(failovers, time.Since(start))
			h.start(leader)
		case 1:
			h.pause(follower)
			time.Sleep(1500 * time.Millisecond) // long enough to miss entries and time out
			h.resume(follower)
		case 2:
			follower.proxy.cut()
			time.Sleep(1500 * time.Millisecond)
			follower.proxy.heal()
		case 3:
			h.kill(follower, syscall.SIGKILL)
			time.Sleep(500 * time.Millisecond)
			h.start(follower)
		}
		// Let the cluster settle: every node up and agreeing on a leader.
		h.waitLeader(nil, 20*time.Second)
		for _, nd := range h.nodes {
			if !nd.running() {
				t.Fatalf("cycle %d: %s exited on its own", c, nd.name)
			}
		}
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	names := append([]string(nil), acked...)
	t.Logf("%d cycles: %d declarations, %d acknowledged, %d refused or timed out during faults", cycles, attempts, len(names), failed)
	mu.Unlock()
	if len(names) == 0 {
		t.Fatal("no declaration was acknowledged")
	}
	sort.Slice(failovers, func(i, j int) bool { return failovers[i] < failovers[j] })
	if len(failovers) > 0 {
		t.Logf("leader killed -> new leader agreed by the survivors: min %s, max %s (%d kills)", failovers[0].Round(time.Millisecond),
			failovers[len(failovers)-1].Round(time.Millisecond), len(failovers))
		if failovers[len(failovers)-1] > 5*time.Second {
			t.Errorf("a failover took %s (over 5 s)", failovers[len(failovers)-1])
		}
	}
	for _, nd := range h.nodes {
		eventually(t, 20*time.Second, nd.name+" has every acknowledged declaration", func() error {
			have, err := nd.queueNames()
			if err != nil {
				return err
			}
			for _, n := range names {
				if !have[n] {
					return fmt.Errorf("%s lacks %s", nd.name, n)
				}
			}
			return nil
		})
	}
}
