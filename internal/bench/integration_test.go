package bench

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Integration tests need a running broker:
//
//	HERALD_BENCH_URL=amqp://guest:guest@localhost:5672/ go test ./internal/bench/ -run Integration -v
//
// HERALD_BENCH_PID, if set, is passed as Config.BrokerPID.
func integrationConfig(t *testing.T, scenario string) Config {
	t.Helper()
	cfg := brokerTestConfig(t, scenario, "HERALD_BENCH_URL", "HERALD_BENCH_PID", "amqp://...")
	cfg.Drain = 3 * time.Second
	return cfg
}

// brokerTestConfig returns a short run of scenario against the broker at
// $urlEnv, skipping the test when that is unset; $pidEnv, if set, is the
// broker's pid.
func brokerTestConfig(t *testing.T, scenario, urlEnv, pidEnv, urlExample string) Config {
	t.Helper()
	url := os.Getenv(urlEnv)
	if url == "" {
		t.Skipf("set %s=%s to run against a broker", urlEnv, urlExample)
	}
	cfg := DefaultConfig()
	cfg.URL = url
	cfg.Scenario = scenario
	cfg.Duration = time.Second
	cfg.Warmup = 200 * time.Millisecond
	if pid, err := strconv.Atoi(os.Getenv(pidEnv)); err == nil {
		cfg.BrokerPID = pid
	}
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runLogged runs cfg, logging the progress and the result table.
func runLogged(t *testing.T, cfg Config) Result {
	t.Helper()
	res, err := Run(t.Context(), cfg, testWriter{t})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var b strings.Builder
	_ = WriteTable(&b, res)
	t.Log("\n" + b.String())
	return res
}

func runIntegration(t *testing.T, cfg Config) Result {
	t.Helper()
	res := runLogged(t, cfg)
	if res.Lost != 0 || res.Duplicated != 0 || res.Malformed != 0 {
		t.Errorf("lost %d, duplicated %d, malformed %d", res.Lost, res.Duplicated, res.Malformed)
	}
	if res.Sent == 0 || res.Received == 0 || res.MsgsPerSec <= 0 || res.Count == 0 || res.P50 <= 0 {
		t.Errorf("no traffic measured: %+v", res)
	}
	if res.Scenario != ScenarioRPC && res.OutOfOrder != 0 {
		t.Errorf("out of order %d", res.OutOfOrder)
	}
	assertCleanedUp(t, cfg.URL, res)
	return res
}

// assertCleanedUp checks the run's queues are gone.
func assertCleanedUp(t *testing.T, url string, res Result) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	names := []string{namePrefix + res.RunID + "-q0", namePrefix + res.RunID + "-rpc"}
	for _, q := range names {
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		_, err = ch.QueueDeclarePassive(q, false, true, false, false, nil)
		var ae *amqp.Error
		if err == nil {
			t.Errorf("queue %s still exists after the run", q)
			ch.Close()
		} else if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
			t.Errorf("passive declare of %s: %v (want 404 NOT_FOUND)", q, err)
		}
	}
}

func TestIntegrationThroughput(t *testing.T) {
	cfg := integrationConfig(t, ScenarioThroughput)
	res := runIntegration(t, cfg)
	if res.Expected != res.Sent {
		t.Errorf("expected %d != sent %d", res.Expected, res.Sent)
	}
}

func TestIntegrationThroughputConfirmsAckBatches(t *testing.T) {
	cfg := integrationConfig(t, ScenarioThroughput)
	cfg.Producers, cfg.Consumers, cfg.Queues = 2, 2, 2
	cfg.Confirm, cfg.ConfirmWindow = true, 200
	cfg.AckEvery, cfg.Prefetch = 50, 200
	cfg.Persistent = true
	res := runIntegration(t, cfg)
	if res.Confirmed == 0 || res.ConfirmLatency == nil || res.ConfirmLatency.Count == 0 {
		t.Errorf("no confirms recorded: confirmed %d", res.Confirmed)
	}
}

func TestIntegrationAutoAck(t *testing.T) {
	cfg := integrationConfig(t, ScenarioThroughput)
	cfg.AutoAck = true
	cfg.Rate = 5000 // auto-ack has no flow control towards the consumer
	runIntegration(t, cfg)
}

func TestIntegrationFanout(t *testing.T) {
	cfg := integrationConfig(t, ScenarioFanout)
	cfg.Queues = 3
	cfg.Rate = 2000
	res := runIntegration(t, cfg)
	if res.Received != 3*res.Sent {
		t.Errorf("fanout to 3 queues: sent %d, delivered %d (want 3x)", res.Sent, res.Received)
	}
}

func TestIntegrationRPC(t *testing.T) {
	cfg := integrationConfig(t, ScenarioRPC)
	cfg.Callers = 4
	res := runIntegration(t, cfg)
	if res.Received != res.Sent {
		t.Errorf("rpc: %d requests, %d answered", res.Sent, res.Received)
	}
}

func TestIntegrationRPCDirectReplyTo(t *testing.T) {
	cfg := integrationConfig(t, ScenarioRPC)
	cfg.Callers = 4
	cfg.DirectReplyTo = true
	runIntegration(t, cfg)
}

func TestIntegrationLatency(t *testing.T) {
	cfg := integrationConfig(t, ScenarioLatency)
	cfg.Rate = 500
	res := runIntegration(t, cfg)
	if res.ScheduleLatency == nil || res.ScheduleLatency.Count == 0 {
		t.Error("no schedule latency in a paced run")
	}
	if got := res.SentPerSec; got < 400 || got > 600 {
		t.Errorf("paced at 500/s but sent %.0f/s", got)
	}
}

func TestIntegrationInterrupt(t *testing.T) {
	cfg := integrationConfig(t, ScenarioThroughput)
	cfg.Duration = time.Minute
	cfg.Rate = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || time.Since(start) > 10*time.Second {
		t.Errorf("interrupted %v after %v", res.Interrupted, time.Since(start))
	}
	if res.Lost != 0 {
		t.Errorf("lost %d after interrupt", res.Lost)
	}
}
