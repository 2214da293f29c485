package test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/bench"
)

// TestBenchMemoryFlood: `herald bench memory --pattern flood` against a
// broker whose watermark is 64 MiB above its current RSS: AMQP and MQTT
// publishers flood a queue nobody reads until the memory alarm is raised,
// the AMQP publishers get connection.blocked, and the run reports it. (The
// broker runs in this process with the clients, so the peak is not
// asserted here: `herald bench memory` against a broker process measures
// it.)
func TestBenchMemoryFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a 5-second flood")
	}
	rss, err := bench.ProcessRSS(0)
	if err != nil {
		t.Skipf("no RSS to measure: %v", err)
	}
	s := startServer(t, withAllProtocols(), func(c *app.Config) {
		c.MemoryLimitBytes = rss + 64<<20
		c.AlarmCheckInterval = 50 * time.Millisecond
	})
	cfg := bench.DefaultMemoryConfig()
	cfg.AMQPURL = s.URL
	cfg.MQTTAddr = s.MQTTAddr().String()
	cfg.HTTPURL = fmt.Sprintf("http://guest:guest@%s", s.HTTPAddr())
	cfg.BrokerPID = os.Getpid()
	cfg.Duration = 5 * time.Second
	cfg.Publishers = 1
	res, err := bench.RunMemory(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("peak RSS %d MiB, watermark %d MiB, published AMQP %d MQTT %d, blocked %d",
		res.RSSPeak>>20, res.Watermark>>20, res.PublishedAMQP, res.PublishedMQTT, res.Blocked)
	if res.Watermark != rss+64<<20 {
		t.Errorf("watermark %d read from /api/nodes, want %d", res.Watermark, rss+64<<20)
	}
	if res.PublishedAMQP == 0 || res.PublishedMQTT == 0 {
		t.Errorf("published AMQP %d, MQTT %d: both should have flooded", res.PublishedAMQP, res.PublishedMQTT)
	}
	if !res.AlarmSeen || res.Blocked == 0 {
		t.Errorf("alarm seen %v, connection.blocked %d: the flood should have raised the alarm and blocked the AMQP publisher", res.AlarmSeen, res.Blocked)
	}
}
