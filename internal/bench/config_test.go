package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
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

// TestNormalizeGolden pins what Normalize makes of each scenario's flags:
// the normalized configuration (as --json reports it) or the exact error,
// including which flag is named first when several are wrong. Regenerate
// with -update after an intended change.
func TestNormalizeGolden(t *testing.T) {
	mq, ws := "mqtt://u:p@127.0.0.1:1883", "ws://u:p@127.0.0.1:15672/ws"
	fan, idle, wsf := ScenarioMQTTFanout, ScenarioMQTTIdle, ScenarioWSFanout
	cases := []Config{
		{},
		DefaultConfig(),
		{Scenario: ScenarioFanout, Confirm: true, Persistent: true},
		{Scenario: ScenarioRPC, Rate: 64},
		{Scenario: ScenarioLatency, AutoAck: true},
		{Scenario: ScenarioThroughput, Producers: 4, Consumers: 4, Queues: 2, Rate: 100},
		{Duration: -1}, {Warmup: -1}, {Drain: -1}, {Producers: -1}, {Consumers: -1}, {Queues: -1},
		{Size: -1}, {Prefetch: -1}, {Prefetch: maxPrefetch + 1}, {AckEvery: -1}, {Rate: -1},
		{ConfirmWindow: -1}, {Callers: -1}, {RPCTimeout: -1}, {BrokerPID: -1},
		{Consumers: -1, Size: -1}, {Duration: -1, Rate: -1}, {Queues: -1, Prefetch: -1},
		{Size: 8}, {Size: maxSize + 1}, {Prefetch: 10, AckEvery: 11}, {Queues: 2},
		{Rate: 1, Producers: 2}, {Scenario: ScenarioRPC, Rate: 3, Callers: 4}, {DirectReplyTo: true},
		{Subscribers: 1}, {QoS: 1}, {Connections: 1}, {URL: mq}, {URL: "nope://"},

		{Scenario: fan}, {Scenario: fan, URL: mq, QoS: 1, Rate: 10, Producers: 2, Size: 64, ConfirmWindow: 5},
		{Scenario: idle, URL: mq},
		{Scenario: fan, URL: mq, Duration: -1}, {Scenario: fan, URL: mq, Warmup: -1}, {Scenario: fan, URL: mq, Drain: -1},
		{Scenario: fan, URL: mq, Producers: -1}, {Scenario: fan, URL: mq, Size: -1}, {Scenario: fan, URL: mq, Rate: -1},
		{Scenario: fan, URL: mq, ConfirmWindow: -1}, {Scenario: fan, URL: mq, BrokerPID: -1},
		{Scenario: fan, URL: mq, Subscribers: -1}, {Scenario: fan, URL: mq, QoS: 2}, {Scenario: idle, URL: mq, Connections: -1},
		{Scenario: fan, URL: mq, Confirm: true}, {Scenario: fan, URL: mq, Persistent: true}, {Scenario: fan, URL: mq, AutoAck: true},
		{Scenario: fan, URL: mq, DirectReplyTo: true}, {Scenario: fan, URL: mq, Queues: 1},
		{Scenario: fan, URL: mq, Size: -1, QoS: 2, Queues: 1}, {Scenario: fan, URL: mq, Subscribers: -1, Duration: -1},
		{Scenario: fan, URL: mq, Connections: 1}, {Scenario: fan, URL: mq, Size: 8}, {Scenario: fan, URL: mq, Size: maxMQTTPayload + 1},
		{Scenario: fan, URL: mq, Rate: 1, Producers: 2}, {Scenario: idle, URL: mq, Rate: 1}, {Scenario: fan, URL: "amqp://h:5672/"},
		{Scenario: fan, URL: "mqtt://h"},

		{Scenario: wsf}, {Scenario: wsf, URL: ws, Rate: 100, Subscribers: 7, Size: 40, Producers: 1},
		{Scenario: wsf, URL: "amqp://h:5672/"}, {Scenario: wsf, URL: ws, Duration: -1}, {Scenario: wsf, URL: ws, Warmup: -1},
		{Scenario: wsf, URL: ws, Drain: -1}, {Scenario: wsf, URL: ws, Rate: -1}, {Scenario: wsf, URL: ws, Subscribers: -1},
		{Scenario: wsf, URL: ws, BrokerPID: -1}, {Scenario: wsf, URL: ws, Producers: 2}, {Scenario: wsf, URL: ws, QoS: 1},
		{Scenario: wsf, URL: ws, Connections: 1}, {Scenario: wsf, URL: ws, Confirm: true}, {Scenario: wsf, URL: ws, Persistent: true},
		{Scenario: wsf, URL: ws, Queues: 1}, {Scenario: wsf, URL: ws, DirectReplyTo: true}, {Scenario: wsf, URL: ws, Size: 8},
		{Scenario: wsf, URL: ws, Rate: -1, Queues: 1},
	}
	var b strings.Builder
	for _, c := range cases {
		in, _ := json.Marshal(c)
		b.WriteString(string(in) + "\n  -> ")
		n, err := c.Normalize()
		if err != nil {
			b.WriteString("error: " + err.Error() + "\n")
			continue
		}
		out, _ := json.Marshal(n)
		b.WriteString(string(out) + "\n")
	}
	checkGolden(t, filepath.Join("testdata", "normalize.golden"), b.String())
}
