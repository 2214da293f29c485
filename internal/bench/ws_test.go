package bench

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/httpapi"
	"github.com/heraldmq/herald/internal/web"
)

// startWeb serves Herald's web front on 127.0.0.1:0 and returns its /ws URL.
func startWeb(t *testing.T) string {
	t.Helper()
	b := broker.New(broker.Options{})
	srv := web.New(web.Config{}, b, auth.NewDefaultUsers(), slog.New(slog.DiscardHandler))
	httpapi.Mount(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		_ = hs.Close()
		<-done
	})
	return "ws://guest:guest@" + ln.Addr().String() + "/ws"
}

func TestWSFanout(t *testing.T) {
	for _, library := range []bool{false, true} {
		name := map[bool]string{false: "lean", true: "library"}[library]
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.URL = startWeb(t)
			cfg.Scenario = ScenarioWSFanout
			cfg.Subscribers = 20
			cfg.Rate = 200
			cfg.Duration = time.Second
			cfg.Warmup = 200 * time.Millisecond
			cfg.LibrarySubscribers = library
			res := runLogged(t, cfg)
			if res.Lost != 0 || res.Duplicated != 0 || res.Malformed != 0 || res.OutOfOrder != 0 || res.WS.ClosedByBroker != 0 {
				t.Errorf("lost %d, duplicated %d, malformed %d, out of order %d, closed %d", res.Lost, res.Duplicated, res.Malformed, res.OutOfOrder, res.WS.ClosedByBroker)
			}
			if res.Sent == 0 || res.Received != res.Sent*20 || res.Count == 0 || res.P50 <= 0 {
				t.Errorf("traffic: sent %d received %d latency samples %d", res.Sent, res.Received, res.Count)
			}
			var b strings.Builder
			_ = WriteTable(&b, res)
			if !strings.Contains(b.String(), "sockets") {
				t.Error("no sockets row in the table")
			}
		})
	}
}

func TestWSFanoutConfig(t *testing.T) {
	for _, bad := range []Config{
		{Scenario: ScenarioWSFanout, URL: "amqp://localhost:5672/"},
		{Scenario: ScenarioWSFanout, URL: "ws://127.0.0.1:1/ws", QoS: 1},
		{Scenario: ScenarioWSFanout, URL: "ws://127.0.0.1:1/ws", Size: 8},
		{Scenario: ScenarioWSFanout, URL: "ws://127.0.0.1:1/ws", PahoSubscribers: true},
		{Scenario: ScenarioMQTTFanout, URL: "mqtt://127.0.0.1:1", LibrarySubscribers: true},
		{Scenario: ScenarioWSIdle, URL: "ws://127.0.0.1:1/ws", LibrarySubscribers: true},
		{Scenario: ScenarioThroughput, LibrarySubscribers: true},
	} {
		if _, err := bad.Normalize(); err == nil {
			t.Errorf("Normalize accepted %+v", bad)
		}
	}
	c, err := Config{Scenario: ScenarioWSFanout, URL: DefaultURL}.Normalize()
	if err != nil || c.URL != "ws://guest:guest@127.0.0.1:15672/ws" || c.Subscribers != DefaultSubscribers {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}
