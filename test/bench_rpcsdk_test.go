package test

import (
	"io"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/bench"
)

// `herald bench rpc-sdk` against a real server for a second: the SDK's
// client and service instance answer every call, none fails, and the
// figures are there.
func TestBenchRPCSDK(t *testing.T) {
	s := startServer(t)
	cfg := bench.DefaultConfig()
	cfg.Scenario = bench.ScenarioRPCSDK
	cfg.URL = s.URL
	cfg.Callers = 8
	cfg.Duration = time.Second
	cfg.Warmup = 200 * time.Millisecond
	res, err := bench.Run(t.Context(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received != res.Sent || res.Lost != 0 {
		t.Fatalf("calls %d, answered %d, failed %d; warnings %q", res.Sent, res.Received, res.Lost, res.Warnings)
	}
	if res.WindowReceived == 0 || res.MsgsPerSec <= 0 || res.P50 <= 0 || res.P99 < res.P50 {
		t.Errorf("no figures: %d round trips in the window, %.0f/s, p50 %v, p99 %v", res.WindowReceived, res.MsgsPerSec, res.P50, res.P99)
	}
	if want := "pkg/rpc: 8 callers on 1 client -> 1 service instance, 128 B protobuf"; res.Description != want {
		t.Errorf("description %q, want %q", res.Description, want)
	}
}
