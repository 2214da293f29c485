package bench

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The table and the JSON object are parsed by users' scripts and by
// scripts/bench-vs-rabbitmq, so every scenario's rendering of a fixed
// result is pinned to a golden file. After an intended change to the
// output, regenerate them with
//
//	go test ./internal/bench/ -run TestOutputGolden -update
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

// normalizedForOutput normalizes cfg, as Run reports it, and then sets a
// broker pid that Normalize would refuse (it checks that the process
// exists): the rendering does not care.
func normalizedForOutput(t *testing.T, cfg Config, brokerPID int) Config {
	t.Helper()
	c, err := cfg.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	c.URL = redactURL(c.URL)
	c.BrokerPID = brokerPID
	return c
}

func outputResults(t *testing.T) map[string]Result {
	lat := func(us ...int) LatencySummary {
		d := func(i int) time.Duration { return time.Duration(us[i]) * time.Microsecond }
		return LatencySummary{Count: uint64(us[0]), Min: d(1), Mean: d(2), P50: d(3), P90: d(4), P99: d(5), P999: d(6), Max: d(7)}
	}
	ptr := func(s LatencySummary) *LatencySummary { return &s }
	warm := func(recv uint64, p99us int) *Phase {
		return &Phase{Elapsed: 500 * time.Millisecond, Sent: recv, Received: recv, MsgsPerSec: float64(recv) * 2,
			Latency: LatencySummary{Count: recv, P50: 40 * time.Microsecond, P99: time.Duration(p99us) * time.Microsecond, Max: 2 * time.Millisecond}}
	}
	out := map[string]Result{}

	c := normalizedForOutput(t, Config{URL: "amqp://guest:secret@127.0.0.1:5672/", Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Prefetch: 1000}, 4242)
	out["throughput"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "0a1b2c3d",
		Sent: 479856, Expected: 479856, Received: 479856,
		Elapsed: 2 * time.Second, WindowSent: 362780, WindowReceived: 362778, MsgsPerSec: 181389, SentPerSec: 181390, MBPerSec: 23.2178,
		LatencySummary: lat(362778, 20, 170000, 171000, 200000, 216000, 224000, 225000),
		Warmup:         warm(82903, 205000),
		DrainTime:      190 * time.Millisecond,
		BrokerCPU:      1.14, MsgsPerBrokerCPUSec: 318254.4, BenchCPU: 2.29,
	}

	c = normalizedForOutput(t, Config{URL: DefaultURL, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Producers: 2, Consumers: 2, Queues: 2,
		Prefetch: 200, AckEvery: 50, Rate: 4000, Confirm: true, Persistent: true}, 0)
	out["throughput-confirm-backlog"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "1a1b2c3d",
		Sent: 10006, Confirmed: 9990, Nacked: 4, Unconfirmed: 12, Expected: 9990, Received: 9000, Lost: 10,
		Duplicated: 3, Redelivered: 7, OutOfOrder: 2, Malformed: 1, Backlog: 980,
		Elapsed: 2 * time.Second, WindowSent: 8000, WindowReceived: 7990, MsgsPerSec: 3995, SentPerSec: 4000, MBPerSec: 0.51136,
		LatencySummary:  lat(7990, 30, 90, 68, 120, 250, 990, 2700),
		ScheduleLatency: ptr(lat(7990, 60, 500, 480, 800, 1200, 1700, 2700)),
		ConfirmLatency:  ptr(lat(8000, 50, 200, 170, 300, 580, 1900, 3000)),
		Warmup:          warm(1998, 300),
		DrainTime:       5*time.Second + 20*time.Millisecond, DrainTimedOut: true,
		BenchCPU: 0.32, Interrupted: true,
		Warnings: []string{"980 messages were still queued when the drain ended", "the drain timed out"},
	}

	c = normalizedForOutput(t, Config{Scenario: ScenarioFanout, Queues: 3, Rate: 3000, Confirm: true, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Prefetch: 1000}, 4242)
	out["fanout"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "2a1b2c3d",
		Sent: 7501, Confirmed: 7501, Expected: 22503, Received: 22503,
		Elapsed: 2 * time.Second, WindowSent: 6000, WindowReceived: 17998, MsgsPerSec: 8999, SentPerSec: 3000, MBPerSec: 1.151872,
		LatencySummary:  lat(18000, 20, 90, 70, 150, 420, 1800, 3800),
		ScheduleLatency: ptr(lat(18000, 40, 600, 580, 900, 1200, 2800, 4500)),
		ConfirmLatency:  ptr(lat(6000, 20, 80, 71, 140, 360, 1600, 3800)),
		Warmup:          warm(4496, 730),
		DrainTime:       20 * time.Millisecond,
		BrokerCPU:       0.16, MsgsPerBrokerCPUSec: 112487.5, BenchCPU: 0.25,
	}

	c = normalizedForOutput(t, Config{Scenario: ScenarioRPC, Callers: 4, Rate: 400, DirectReplyTo: true, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Prefetch: 1000}, 4242)
	out["rpc"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "3a1b2c3d",
		Sent: 1004, Expected: 1004, Received: 1000, Lost: 1, Duplicated: 2, Malformed: 1, Timeouts: 3,
		Elapsed: 2 * time.Second, WindowSent: 804, WindowReceived: 804, MsgsPerSec: 402, SentPerSec: 402, MBPerSec: 0.051456,
		LatencySummary:  lat(804, 60, 200, 160, 400, 1600, 3000, 3000),
		ScheduleLatency: ptr(lat(804, 100, 800, 770, 1200, 2500, 6100, 6100)),
		Warmup:          warm(200, 1200),
		DrainTime:       5 * time.Millisecond,
		BrokerCPU:       0.04, MsgsPerBrokerCPUSec: 20100, BenchCPU: 0.06,
		Warnings: []string{"3 requests got no reply within --rpc-timeout 5s"},
	}

	c = normalizedForOutput(t, Config{Scenario: ScenarioLatency, Rate: 500, Duration: 2 * time.Second, Prefetch: 1000}, 0)
	out["latency"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "4a1b2c3d",
		Sent: 1000, Expected: 1000, Received: 1000,
		Elapsed: 2 * time.Second, WindowSent: 1000, WindowReceived: 1000, MsgsPerSec: 500, SentPerSec: 500, MBPerSec: 0.064,
		LatencySummary:  lat(1000, 20, 60, 47, 90, 140, 720, 4100),
		ScheduleLatency: ptr(lat(1000, 40, 600, 580, 900, 1200, 3700, 4300)),
		DrainTime:       20 * time.Millisecond,
		BenchCPU:        0.05,
	}

	perSub := func(n int, expected, received uint64) []SubscriberTally {
		var per []SubscriberTally
		for i := range n {
			s := SubscriberTally{Subscriber: i, Expected: expected, Received: received}
			if i == 1 {
				s.Received, s.Lost, s.Malformed = received-7, 7, 1
			}
			if i == 2 {
				s.Received, s.Duplicated, s.OutOfOrder = received+2, 2, 1
			}
			per = append(per, s)
		}
		return per
	}
	c = normalizedForOutput(t, Config{Scenario: ScenarioMQTTFanout, URL: "mqtt://guest:secret@127.0.0.1:1883", Subscribers: 5, Rate: 2000, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond}, 4242)
	out["mqtt-fanout-qos0"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "5a1b2c3d",
		Sent: 5000, Expected: 25000, Received: 24996, Lost: 7, Duplicated: 2, OutOfOrder: 1, Malformed: 1,
		Elapsed: 2 * time.Second, WindowSent: 4000, WindowReceived: 19996, MsgsPerSec: 9998, SentPerSec: 1999.5, MBPerSec: 1.279744,
		LatencySummary:  lat(19996, 30, 150, 100, 300, 1400, 4200, 6000),
		ScheduleLatency: ptr(lat(19996, 50, 700, 650, 1100, 3100, 4700, 7000)),
		Warmup:          warm(4994, 260),
		DrainTime:       20 * time.Millisecond,
		BrokerCPU:       0.17, MsgsPerBrokerCPUSec: 117623.5, BenchCPU: 0.19,
		PerSubscriber: perSub(5, 5000, 5000),
		Warnings:      []string{"7 deliveries lost at QoS 0 (allowed by MQTT: the broker may drop QoS 0 messages for slow subscribers)"},
	}

	c = normalizedForOutput(t, Config{Scenario: ScenarioMQTTFanout, URL: "mqtt://127.0.0.1:1883", Subscribers: 3, QoS: 1, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond}, 0)
	out["mqtt-fanout-qos1"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "6a1b2c3d",
		Sent: 5004, Confirmed: 5000, Nacked: 4, Expected: 15000, Received: 15000,
		Elapsed: 2 * time.Second, WindowSent: 4000, WindowReceived: 12000, MsgsPerSec: 6000, SentPerSec: 2000, MBPerSec: 0.768,
		LatencySummary: lat(12000, 30, 150, 130, 230, 750, 2800, 6900),
		ConfirmLatency: ptr(lat(4000, 20, 160, 140, 230, 700, 2700, 6800)),
		Warmup:         warm(3000, 810),
		DrainTime:      20 * time.Millisecond,
		BenchCPU:       0.24,
		PerSubscriber:  []SubscriberTally{{Subscriber: 0, Expected: 5000, Received: 5000}, {Subscriber: 1, Expected: 5000, Received: 5000}, {Subscriber: 2, Expected: 5000, Received: 5000}},
	}

	c = normalizedForOutput(t, Config{Scenario: ScenarioMQTTIdle, URL: "mqtt://127.0.0.1:1883", Connections: 200, Duration: 2 * time.Second}, 4242)
	out["mqtt-idle"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "7a1b2c3d",
		Elapsed: 2 * time.Second, BrokerCPU: 0.002, BenchCPU: 0.001,
		Idle: &IdleResult{Requested: 200, Connected: 199, Failed: 1, FirstError: "idle connection 7: no CONNACK within 6s", StillConnected: 198,
			ConnectTime: 22 * time.Millisecond, ConnectsPerSec: 9045.45, Hold: 2 * time.Second, KeepAlive: MQTTIdleKeepAlive, NoFileLimit: 20000,
			RSSBefore: 22124544, RSSAfter: 23382016, RSSPerConn: 6318.95},
		Warnings: []string{"1 of 200 connects failed; the first: idle connection 7: no CONNACK within 6s"},
	}

	c = normalizedForOutput(t, Config{Scenario: ScenarioWSFanout, URL: "ws://guest:secret@127.0.0.1:15672/ws", Subscribers: 20, Rate: 500, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond}, 4242)
	out["ws-fanout"] = Result{
		Scenario: c.Scenario, Description: Describe(c), Config: c, RunID: "8a1b2c3d",
		Sent: 1250, Expected: 25000, Received: 24993, Lost: 7, Duplicated: 2, OutOfOrder: 1, Malformed: 1,
		Elapsed: 2 * time.Second, WindowSent: 1000, WindowReceived: 19992, MsgsPerSec: 9996, SentPerSec: 500, MBPerSec: 1.279488,
		LatencySummary: lat(19992, 60, 200, 180, 300, 500, 1500, 1500),
		Warmup:         warm(4998, 440),
		DrainTime:      20 * time.Millisecond,
		BrokerCPU:      0.23, MsgsPerBrokerCPUSec: 86921.7, BenchCPU: 0.16,
		PerSubscriber: perSub(20, 1250, 1250),
		WS: &WSResult{Subscribers: 20, ClosedByBroker: 1, FirstClose: "status = StatusPolicyViolation and reason = \"too slow\"", NoFileLimit: 20000,
			RSSBefore: 24222105, RSSSubscribed: 22963814, RSSEnd: 23907532, ConnectTime: 41 * time.Millisecond},
		Warnings: []string{"the broker closed 1 subscriber sockets during the run (first: too slow)"},
	}
	return out
}

func TestOutputGolden(t *testing.T) {
	for name, res := range outputResults(t) {
		t.Run(name, func(t *testing.T) {
			var table strings.Builder
			if err := WriteTable(&table, res); err != nil {
				t.Fatal(err)
			}
			// As `herald bench --json` writes it.
			var js strings.Builder
			if err := json.NewEncoder(&js).Encode(res); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", "output", name+".table"), table.String())
			checkGolden(t, filepath.Join("testdata", "output", name+".json"), js.String())
		})
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
