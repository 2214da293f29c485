package bench

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNormalizeMQTTDefaults(t *testing.T) {
	d := DefaultConfig()
	d.Scenario = ScenarioMQTTFanout
	f, err := d.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if f.URL != DefaultMQTTURL || f.Subscribers != DefaultSubscribers || f.Consumers != DefaultSubscribers ||
		f.Producers != 1 || f.QoS != 0 || f.Size != DefaultSize || f.Connections != 0 {
		t.Errorf("mqtt-fanout defaults: %+v", f)
	}

	d.Scenario = "MQTT-IDLE"
	i, err := d.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if i.Scenario != ScenarioMQTTIdle || i.Connections != DefaultConnections || i.Producers != 0 || i.Warmup != 0 {
		t.Errorf("mqtt-idle defaults: %+v", i)
	}

	c, err := Config{Scenario: ScenarioMQTTFanout, URL: "mqtt://u:p@127.0.0.1:1884", QoS: 1, Subscribers: 3, Rate: 500}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "mqtt://u:p@127.0.0.1:1884" || c.QoS != 1 || c.Subscribers != 3 || c.Rate != 500 || c.ConfirmWindow != DefaultConfirmWindow {
		t.Errorf("explicit mqtt-fanout: %+v", c)
	}
	for _, u := range []string{"tcp://h:1", "mqtts://h:8883", "ws://h:80/mqtt"} {
		if _, err := (Config{Scenario: ScenarioMQTTIdle, URL: u}).Normalize(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestNormalizeMQTTErrors(t *testing.T) {
	fan, idle := ScenarioMQTTFanout, ScenarioMQTTIdle
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Scenario: fan, QoS: 2}, "--qos must be 0 or 1"},
		{Config{Scenario: fan, QoS: -1}, "--qos"},
		{Config{Scenario: fan, URL: "amqp://guest:guest@h:5672/"}, "speaks MQTT"},
		{Config{Scenario: fan, URL: "mqtt://h"}, "host and port are required"},
		{Config{Scenario: fan, URL: "http://h:80"}, "invalid --url"},
		{Config{Scenario: fan, Confirm: true}, "--confirm does not apply to MQTT"},
		{Config{Scenario: fan, Persistent: true}, "--persistent"},
		{Config{Scenario: fan, Queues: 4}, "--queues does not apply"},
		{Config{Scenario: fan, Connections: 5}, "--connections only applies to --scenario mqtt-idle"},
		{Config{Scenario: fan, Size: 8}, "--size 8 is too small"},
		{Config{Scenario: fan, Subscribers: -3}, "--subscribers"},
		{Config{Scenario: fan, Rate: 1, Producers: 2}, "--rate 1 is lower than --producers 2"},
		{Config{Scenario: fan, BrokerPID: 1 << 30}, "no such process"},
		{Config{Scenario: idle, Subscribers: 5}, "only apply to --scenario mqtt-fanout"},
		{Config{Scenario: idle, QoS: 1}, "only apply to --scenario mqtt-fanout"},
		{Config{Scenario: idle, Connections: -1}, "--connections"},
		// AMQP scenarios keep their URL and refuse the MQTT-only flags.
		{Config{URL: "mqtt://h:1883"}, "is an MQTT URL but --scenario throughput speaks AMQP"},
		{Config{Subscribers: 10}, "--subscribers only applies to the MQTT scenarios"},
		{Config{Scenario: ScenarioFanout, QoS: 1}, "--qos only applies"},
		{Config{Connections: 10}, "--connections only applies"},
	}
	for _, c := range cases {
		_, err := c.cfg.Normalize()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Normalize(%+v) = %v, want an error containing %q", c.cfg, err, c.want)
		}
	}
	// The password never appears in an error message.
	_, err := Config{Scenario: fan, URL: "amqp://u:secret@h:5672/"}.Normalize()
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("err = %v", err)
	}
}

func TestTallySubscribers(t *testing.T) {
	all, holes, dups := NewTracker(2), NewTracker(2), NewTracker(2)
	for p := uint32(0); p < 2; p++ {
		for s := uint64(0); s < 10; s++ {
			all.Observe(p, s, false)
			if s != 3 && s != 7 {
				holes.Observe(p, s, false)
			}
			dups.Observe(p, s, false)
		}
	}
	dups.Observe(1, 4, true)
	// Producer 1's seq 9 failed to publish (no PUBACK): not expected, and
	// not lost where it did not arrive.
	expect := []Expect{{Producer: 0, Count: 10}, {Producer: 1, Count: 10, Exclude: []uint64{9}}}
	total, per := tallySubscribers([]*Tracker{all, holes, dups}, expect)
	want := []SubscriberTally{
		{Subscriber: 0, Expected: 19, Received: 20},
		{Subscriber: 1, Expected: 19, Received: 16, Lost: 4},
		{Subscriber: 2, Expected: 19, Received: 21, Duplicated: 1},
	}
	for i := range want {
		if per[i] != want[i] {
			t.Errorf("subscriber %d: %+v, want %+v", i, per[i], want[i])
		}
	}
	if total.Expected != 57 || total.Lost != 4 || total.Duplicated != 1 || total.Received != 57 || total.Redelivered != 1 {
		t.Errorf("total %+v", total)
	}
	line := subscriberLine(per)
	for _, s := range []string{"3 subscribers", "received 16..21", "1 lost some (max 4)", "1 got duplicates (max 1)"} {
		if !strings.Contains(line, s) {
			t.Errorf("subscriberLine %q lacks %q", line, s)
		}
	}
}

const statusGolden = "Name:\tmosquitto\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t   20000 kB\nVmRSS:\t    6784 kB\nRssAnon:\t    1024 kB\n"

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte(statusGolden))
	if err != nil || n != 6784*1024 {
		t.Fatalf("parseVmRSS = %d, %v", n, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n", ""} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("parseVmRSS(%q) accepted", bad)
		}
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	self, err := ProcessRSS(0)
	if err != nil || self < 1<<20 {
		t.Errorf("ProcessRSS(self) = %d, %v", self, err)
	}
	if _, err := ProcessRSS(os.Getpid()); err != nil {
		t.Error(err)
	}
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte(statusGolden))
	f.Add([]byte("VmRSS:\t0 kB"))
	f.Add([]byte("VmRSS: 18446744073709551615 kB\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseVmRSS(data)
		if err == nil && n%1024 != 0 {
			t.Fatalf("%d bytes is not a whole number of kB", n)
		}
	})
}

func FuzzParseMQTTURL(f *testing.F) {
	for _, s := range []string{"mqtt://u:p@127.0.0.1:1883", "tcp://h:1", "ws://h:80/mqtt", "amqp://h:5672/", "mqtt://h", "mqtt://[::1]:1883"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseMQTTURL(s)
		if err == nil && (u.Port() == "" || u.Hostname() == "" || !isMQTTURL(s)) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestRaiseNoFile(t *testing.T) {
	got, err := raiseNoFile()
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if got != lim.Cur || lim.Cur != lim.Max {
		t.Errorf("raiseNoFile = %d, limits now %+v", got, lim)
	}
}

func TestDescribeMQTT(t *testing.T) {
	f, _ := Config{Scenario: ScenarioMQTTFanout, QoS: 1, Rate: 2000}.Normalize()
	if got := Describe(f); got != "1 publisher -> 1 topic -> 100 subscribers, QoS 1 at 2,000 msg/s, 128 B" {
		t.Errorf("Describe = %q", got)
	}
	i, _ := Config{Scenario: ScenarioMQTTIdle}.Normalize()
	if got := Describe(i); got != "10,000 idle MQTT connections, keep-alive 1m0s, held 10s" {
		t.Errorf("Describe = %q", got)
	}
}

func TestWriteTableMQTT(t *testing.T) {
	cfg, _ := Config{Scenario: ScenarioMQTTFanout, QoS: 1, Subscribers: 2, BrokerPID: os.Getpid()}.Normalize()
	conf := LatencySummary{Count: 1, P50: time.Millisecond}
	res := Result{Scenario: cfg.Scenario, Config: cfg, Sent: 10, Received: 20, Expected: 20, Confirmed: 10,
		Elapsed: time.Second, MsgsPerSec: 20, SentPerSec: 10, ConfirmLatency: &conf,
		PerSubscriber: []SubscriberTally{{Subscriber: 0, Received: 10}, {Subscriber: 1, Received: 10}}}
	var b strings.Builder
	if err := WriteTable(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"delivered 20", "per sub    2 subscribers", "pubacks    acked 10   failed 0", "20 deliveries/s   10 publishes/s"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}

	icfg, _ := Config{Scenario: ScenarioMQTTIdle, Connections: 100, BrokerPID: os.Getpid()}.Normalize()
	res = Result{Scenario: icfg.Scenario, Config: icfg, BrokerCPU: 0.5, Idle: &IdleResult{
		Requested: 100, Connected: 99, Failed: 1, StillConnected: 99, ConnectTime: 500 * time.Millisecond,
		ConnectsPerSec: 198, Hold: 10 * time.Second, RSSBefore: 10 << 20, RSSAfter: 11 << 20, RSSPerConn: 10591.0,
	}}
	b.Reset()
	if err := WriteTable(&b, res); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"100 requested   99 connected   1 failed   99 still connected", "198 connects/s",
		"10.0 MiB before -> 11.0 MiB with 99 connections = 10.3 KiB per connection", "cpu 0.50s while idle (5.0% of a core)"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
	if strings.Contains(b.String(), "latency") {
		t.Errorf("idle table shows latency:\n%s", b.String())
	}
}

// A broker that is not there fails the run quickly, for both scenarios.
func TestRunMQTTConnectRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, sc := range []string{ScenarioMQTTFanout, ScenarioMQTTIdle} {
		cfg := Config{Scenario: sc, URL: "mqtt://" + addr, Subscribers: 2, Connections: 3, Duration: time.Second}
		if sc == ScenarioMQTTIdle {
			cfg.Subscribers = 0
		}
		start := time.Now()
		_, err := Run(context.Background(), cfg, nil)
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Errorf("%s: err = %v", sc, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%s: took %v to fail", sc, d)
		}
	}
}
