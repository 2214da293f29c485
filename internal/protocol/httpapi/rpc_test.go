package httpapi

import (
	"testing"
	"time"
)

func TestRPCHTTPStatus(t *testing.T) {
	for status, want := range map[string]int{
		"OK": 200, "": 200, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "UNIMPLEMENTED": 501,
		"RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
		"INTERNAL": 500, "PERMISSION_DENIED": 500, "whatever": 500,
	} {
		if got := rpcHTTPStatus(status); got != want {
			t.Errorf("%q: %d, want %d", status, got, want)
		}
	}
}

func TestParseRPCTimeout(t *testing.T) {
	for h, want := range map[string]time.Duration{"": rpcDefaultTimeout, "250ms": 250 * time.Millisecond, "5m": 5 * time.Minute} {
		if got, err := parseRPCTimeout(h); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", h, got, err, want)
		}
	}
	for _, h := range []string{"soon", "0", "0s", "-1s", "5m1s", "1h", "10"} {
		if _, err := parseRPCTimeout(h); err == nil {
			t.Errorf("%q accepted", h)
		}
	}
}

// FuzzParseRPCTimeout: any X-Herald-Timeout is refused or within bounds.
func FuzzParseRPCTimeout(f *testing.F) {
	for _, s := range []string{"", "30s", "1.5s", "300ms", "5m", "5m0.000000001s", "-0s", "1e3s", "9223372036854775807ns", "1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		d, err := parseRPCTimeout(h)
		if err == nil && (d <= 0 || d > rpcMaxTimeout) {
			t.Fatalf("%q gave %v", h, d)
		}
	})
}
