package test

import (
	"io"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/bench"
)

// `herald bench mqtt-fanout` against a real server, with the bench's lean
// subscribers (the default) and with paho ones: every delivery counted,
// nothing lost, duplicated or out of order, QoS 1 publishes acknowledged.
func TestBenchMQTTFanout(t *testing.T) {
	s := startServer(t, func(c *app.Config) { c.MQTTAddr = "127.0.0.1:0" })
	for _, tc := range []struct {
		name string
		qos  int
		paho bool
	}{{"lean-qos0", 0, false}, {"lean-qos1", 1, false}, {"paho-qos1", 1, true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bench.DefaultConfig()
			cfg.Scenario = bench.ScenarioMQTTFanout
			cfg.URL = "mqtt://guest:guest@" + s.MQTTAddr().String()
			cfg.QoS = tc.qos
			cfg.PahoSubscribers = tc.paho
			cfg.Subscribers = 20
			cfg.Rate = 1000 // paced: a QoS 0 loss is then a bug too
			cfg.Duration = time.Second
			cfg.Warmup = 200 * time.Millisecond
			cfg.Drain = 10 * time.Second
			res, err := bench.Run(t.Context(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Sent == 0 || res.Received != res.Sent*20 {
				t.Fatalf("sent %d, delivered %d, want 20 each", res.Sent, res.Received)
			}
			if res.Lost != 0 || res.Duplicated != 0 || res.Malformed != 0 || res.OutOfOrder != 0 {
				t.Errorf("lost %d, duplicated %d, malformed %d, out of order %d", res.Lost, res.Duplicated, res.Malformed, res.OutOfOrder)
			}
			if len(res.PerSubscriber) != 20 {
				t.Fatalf("%d per-subscriber tallies, want 20", len(res.PerSubscriber))
			}
			for _, sub := range res.PerSubscriber {
				if sub.Received != res.Sent {
					t.Errorf("a subscriber received %d of %d", sub.Received, res.Sent)
				}
			}
			if tc.qos == 1 && res.Confirmed != res.Sent {
				t.Errorf("%d of %d publishes acknowledged", res.Confirmed, res.Sent)
			}
			if res.P50 <= 0 {
				t.Errorf("no latency measured: %+v", res)
			}
		})
	}
}
