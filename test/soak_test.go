package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/bench"
)

// TestSoakShort runs `herald bench soak` for a few seconds against a real
// server: every protocol's clients at once, and not one confirmed message
// lost or duplicated; the broker's open files are back where they started.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("a 15-second soak")
	}
	// Not parallel: the broker runs in this process, whose open files are
	// compared before and after, so no other test may open any meanwhile.
	s := startServer(t, withAllProtocols())
	cfg := bench.DefaultSoakConfig()
	cfg.AMQPURL = s.URL
	cfg.MQTTURL = fmt.Sprintf("mqtt://guest:guest@%s", s.MQTTAddr())
	cfg.STOMPURL = fmt.Sprintf("stomp://guest:guest@%s", s.STOMPAddr())
	cfg.HTTPURL = fmt.Sprintf("http://guest:guest@%s", s.HTTPAddr())
	cfg.Duration = 12 * time.Second
	cfg.Interval = time.Second // 12 samples: 9 are asserted below, with room for a late tick
	cfg.Drain = 30 * time.Second
	cfg.Seed = 20
	res, err := bench.RunSoak(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Confirmed == 0 || res.Delivered == 0 || res.RPCCalls == 0 || res.Reconnects == 0 {
		t.Fatalf("the soak did too little: %d confirmed, %d delivered, %d RPC calls, %d reconnects", res.Confirmed, res.Delivered, res.RPCCalls, res.Reconnects)
	}
	if len(res.Lanes) != 12 {
		t.Errorf("%d lanes, want 12 (3 to the work queue, 2 to each of 4 fan-out subscribers, 1 to the slow consumer)", len(res.Lanes))
	}
	for _, l := range res.Lanes {
		if l.Confirmed == 0 || l.Lost > 0 || l.Duplicates > 0 {
			t.Errorf("lane %s: %+v", l.Lane, l)
		}
	}
	if res.Failed() || res.Errors > 0 || res.RPCFailures > 0 {
		t.Errorf("lost %d, duplicates %d, errors %d %q, rpc failures %d", res.Lost, res.Duplicates, res.Errors, res.ErrorSample, res.RPCFailures)
	}
	// The test process is the broker and the clients: its open files are
	// back to the start once both sides have closed.
	if !res.FDBack {
		t.Errorf("open files: %d at start, %d at the end", res.FDStart, res.FDEnd)
	}
	if len(res.Samples) < 9 || !res.RSSLevel.Judged {
		t.Errorf("%d samples in %v at %v (RSS %+v)", len(res.Samples), cfg.Duration, cfg.Interval, res.RSSLevel)
	}
}
