package bench

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestNormalizeDefaults(t *testing.T) {
	c, err := Config{}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != DefaultURL || c.Scenario != ScenarioThroughput || c.Duration != DefaultDuration ||
		c.Producers != 1 || c.Consumers != 1 || c.Queues != 1 || c.Size != DefaultSize || c.AckEvery != 1 ||
		c.Rate != 0 || c.Warmup != 0 || c.Prefetch != 0 {
		t.Errorf("zero config normalized to %+v", c)
	}

	f, err := Config{Scenario: "FANOUT", Consumers: 3}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if f.Scenario != ScenarioFanout || f.Queues != DefaultFanoutQueues || f.Consumers != DefaultFanoutQueues {
		t.Errorf("fanout: %+v", f)
	}

	l, err := Config{Scenario: ScenarioLatency}.Normalize()
	if err != nil || l.Rate != DefaultLatencyRate {
		t.Errorf("latency rate %d, err %v", l.Rate, err)
	}
	l, _ = Config{Scenario: ScenarioLatency, Rate: 50}.Normalize()
	if l.Rate != 50 {
		t.Errorf("explicit latency rate overridden: %d", l.Rate)
	}

	r, err := Config{Scenario: ScenarioRPC}.Normalize()
	if err != nil || r.Callers != DefaultCallers || r.Producers != DefaultCallers || r.Queues != 1 {
		t.Errorf("rpc: %+v %v", r, err)
	}

	d := DefaultConfig()
	if d.Prefetch != 1000 || d.Warmup != time.Second || d.Drain != DefaultDrain || d.Callers != 16 {
		t.Errorf("DefaultConfig %+v", d)
	}
	if _, err := d.Normalize(); err != nil {
		t.Errorf("DefaultConfig does not normalize: %v", err)
	}
}

func TestNormalizeErrors(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Scenario: "pingpong"}, "unknown --scenario"},
		{Config{URL: "http://example.com/"}, "invalid --url"},
		{Config{Size: 8}, "--size 8 is too small"},
		{Config{Size: 1 << 30}, "--size"},
		{Config{Prefetch: 10, AckEvery: 20}, "--ack-every 20 is larger than --prefetch 10"},
		{Config{Prefetch: 70000}, "--prefetch"},
		{Config{Producers: -1}, "--producers"},
		{Config{Rate: 2, Producers: 4}, "--rate 2 is lower than --producers 4"},
		{Config{Scenario: ScenarioRPC, Rate: 2}, "--callers"},
		{Config{Queues: 3}, "--queues 3"},
		{Config{DirectReplyTo: true}, "--direct-reply-to only applies"},
		{Config{Duration: -time.Second}, "--duration"},
		{Config{BrokerPID: 1 << 30}, "no such process"},
	}
	for _, c := range cases {
		_, err := c.cfg.Normalize()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Normalize(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
	// Ack batching is fine with auto-ack or unlimited prefetch.
	for _, c := range []Config{{Prefetch: 10, AckEvery: 20, AutoAck: true}, {Prefetch: 0, AckEvery: 500}} {
		if _, err := c.Normalize(); err != nil {
			t.Errorf("Normalize(%+v): %v", c, err)
		}
	}
}

func TestNormalizeBrokerPID(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := (Config{BrokerPID: os.Getpid()}).Normalize(); err != nil {
		t.Fatal(err)
	}
}

func TestRedactURL(t *testing.T) {
	if got := redactURL("amqp://user:secret@host:5672/vh"); strings.Contains(got, "secret") {
		t.Errorf("password not redacted: %s", got)
	}
}
