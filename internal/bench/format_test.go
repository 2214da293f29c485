package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFormatCount(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 104001: "104,001", 1040000: "1,040,000", 12345678901: "12,345,678,901"} {
		if got := FormatCount(n); got != want {
			t.Errorf("FormatCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFormatLatency(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "0",
		800 * time.Nanosecond:   "0.8µs",
		42 * time.Microsecond:   "42µs",
		410 * time.Microsecond:  "0.41ms",
		1900 * time.Microsecond: "1.9ms",
		250 * time.Millisecond:  "250ms",
		12 * time.Second:        "12.0s",
	} {
		if got := FormatLatency(d); got != want {
			t.Errorf("FormatLatency(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestDescribe(t *testing.T) {
	c, _ := DefaultConfig().Normalize()
	if got, want := Describe(c), "1 producer -> 1 consumer, 128 B, prefetch 1000, manual ack"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	f := DefaultConfig()
	f.Scenario, f.Confirm, f.Persistent = ScenarioFanout, true, true
	f, _ = f.Normalize()
	if got := Describe(f); !strings.Contains(got, "1 producer -> fanout -> 10 queues") || !strings.Contains(got, "confirms") || !strings.Contains(got, "persistent") {
		t.Errorf("fanout Describe = %q", got)
	}
	r := DefaultConfig()
	r.Scenario, r.DirectReplyTo = ScenarioRPC, true
	r, _ = r.Normalize()
	if got := Describe(r); !strings.HasPrefix(got, "16 callers -> 1 server, direct reply-to") {
		t.Errorf("rpc Describe = %q", got)
	}
	l := DefaultConfig()
	l.Scenario = ScenarioLatency
	l, _ = l.Normalize()
	if got := Describe(l); !strings.Contains(got, "at 1,000 msg/s") {
		t.Errorf("latency Describe = %q", got)
	}
}

func sampleResult() Result {
	cfg, _ := DefaultConfig().Normalize()
	cfg.BrokerPID = 1234
	return Result{
		Scenario: ScenarioThroughput, Description: Describe(cfg), Config: cfg,
		Sent: 1040000, Expected: 1040000, Received: 1040000,
		Elapsed: 10 * time.Second, WindowReceived: 1040000, MsgsPerSec: 104000, SentPerSec: 104010, MBPerSec: 13.312,
		LatencySummary: LatencySummary{Count: 1040000, P50: 410 * time.Microsecond, P99: 1900 * time.Microsecond, P999: 4 * time.Millisecond, Max: 9100 * time.Microsecond},
		Warmup:         &Phase{Elapsed: time.Second, MsgsPerSec: 90000},
		BrokerCPU:      7.5, MsgsPerBrokerCPUSec: 138667, BenchCPU: 6,
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := WriteTable(&b, sampleResult()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"scenario   throughput  (1 producer -> 1 consumer, 128 B, prefetch 1000, manual ack)\n",
		"sent       1,040,000   received 1,040,000   lost 0   duplicated 0   out-of-order 0\n",
		"rate       104,000 msg/s   13.3 MB/s",
		"latency    p50 0.41ms  p99 1.9ms  p99.9 4.0ms  max 9.1ms\n",
		"138,667 msgs per broker CPU-second",
		"(75% of a core)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestResultJSON(t *testing.T) {
	data, err := json.Marshal(sampleResult())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "sent", "received", "lost", "duplicated", "out_of_order", "msgs_per_sec", "mb_per_sec", "p50_ns", "p99_ns", "p999_ns", "max_ns", "config", "broker_cpu_seconds", "msgs_per_broker_cpu_second", "warmup"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, data)
		}
	}
	if m["p99_ns"].(float64) != 1.9e6 {
		t.Errorf("p99_ns = %v", m["p99_ns"])
	}
}
