package bench

import (
	"strconv"
	"testing"
	"time"
)

// MQTT integration tests need a running MQTT broker:
//
//	HERALD_BENCH_MQTT_URL=mqtt://127.0.0.1:1883 go test ./internal/bench/ -run IntegrationMQTT -v
//
// HERALD_BENCH_MQTT_PID, if set, is passed as Config.BrokerPID (so the
// mqtt-idle test also checks the RSS figures).
func mqttIntegrationConfig(t *testing.T, scenario string) Config {
	t.Helper()
	cfg := brokerTestConfig(t, scenario, "HERALD_BENCH_MQTT_URL", "HERALD_BENCH_MQTT_PID", "mqtt://host:port")
	cfg.Drain = 5 * time.Second
	return cfg
}

func TestIntegrationMQTTFanout(t *testing.T) {
	for _, qos := range []int{0, 1} {
		t.Run("qos"+strconv.Itoa(qos), func(t *testing.T) {
			cfg := mqttIntegrationConfig(t, ScenarioMQTTFanout)
			cfg.QoS = qos
			cfg.Subscribers = 5
			// Paced, so that a broker that drops QoS 0 messages for slow
			// subscribers has no reason to: any loss is then a bug.
			cfg.Rate = 2000
			res := runLogged(t, cfg)
			if res.Lost != 0 || res.Duplicated != 0 || res.Malformed != 0 || res.OutOfOrder != 0 {
				t.Errorf("lost %d, duplicated %d, malformed %d, out of order %d", res.Lost, res.Duplicated, res.Malformed, res.OutOfOrder)
			}
			if res.Sent == 0 || res.MsgsPerSec <= 0 || res.Count == 0 || res.P50 <= 0 {
				t.Errorf("no traffic measured: %+v", res)
			}
			if len(res.PerSubscriber) != 5 {
				t.Fatalf("%d per-subscriber tallies", len(res.PerSubscriber))
			}
			for _, s := range res.PerSubscriber {
				if s.Lost != 0 || s.Duplicated != 0 || s.Received == 0 {
					t.Errorf("subscriber %+v", s)
				}
			}
			if res.Received != res.Sent*5 {
				t.Errorf("sent %d, delivered %d, want 5x", res.Sent, res.Received)
			}
			if qos == 1 && (res.Confirmed != res.Sent || res.ConfirmLatency == nil || res.ConfirmLatency.Count == 0) {
				t.Errorf("QoS 1: %d of %d publishes acknowledged, latency %+v", res.Confirmed, res.Sent, res.ConfirmLatency)
			}
		})
	}
}

func TestIntegrationMQTTIdle(t *testing.T) {
	cfg := mqttIntegrationConfig(t, ScenarioMQTTIdle)
	cfg.Connections = 200
	res, err := Run(t.Context(), cfg, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	id := res.Idle
	if id == nil || id.Connected != 200 || id.StillConnected != 200 || id.Failed != 0 || id.ConnectsPerSec <= 0 {
		t.Fatalf("idle result %+v", id)
	}
	if cfg.BrokerPID > 0 && (id.RSSBefore == 0 || id.RSSAfter == 0) {
		t.Errorf("no RSS figures: %+v", id)
	}
	t.Logf("%+v", *id)
}
