package rpc

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"
)

func testGovernor(cfg ClientConfig) *governor {
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.defaults()
	return newGovernor(&cfg)
}

// failing returns an attempt that fails with errs in turn, then succeeds.
func failing(errs ...error) (func() error, *int) {
	n := new(int)
	return func() error {
		*n++
		if *n <= len(errs) {
			return errs[*n-1]
		}
		return nil
	}, n
}

var (
	unavailable  = Errorf(Unavailable, "busy")
	noResponders = newError(Unavailable, ErrNoResponders, "none")
	connLost     = newError(Unavailable, ErrConnectionLost, "lost")
)

func TestRetryOnlyIdempotentAndRetryable(t *testing.T) {
	g := testGovernor(ClientConfig{Retry: &RetryPolicy{MaxAttempts: 4, InitialBackoff: time.Millisecond}})
	ctx := context.Background()

	attempt, n := failing(unavailable, noResponders, connLost)
	if err := g.run(ctx, "s", true, attempt); err != nil || *n != 4 {
		t.Fatalf("idempotent: %v after %d attempts", err, *n)
	}
	attempt, n = failing(unavailable)
	if err := g.run(ctx, "s", false, attempt); !errors.Is(err, unavailable) || *n != 1 {
		t.Fatalf("not idempotent: %v after %d attempts", err, *n)
	}
	for _, e := range []error{Errorf(Internal, "x"), Errorf(DeadlineExceeded, "x"), Errorf(InvalidArgument, "x"),
		newError(Unavailable, ErrCircuitOpen, "open")} {
		attempt, n = failing(e)
		if err := g.run(ctx, "s", true, attempt); err != e || *n != 1 {
			t.Fatalf("%v retried: %d attempts", e, *n)
		}
	}
	attempt, n = failing(unavailable, unavailable, unavailable, unavailable, unavailable)
	if err := g.run(ctx, "s", true, attempt); err != unavailable || *n != 4 {
		t.Fatalf("MaxAttempts: %v after %d", err, *n)
	}
	if st := g.stats(); st.Retries != 6 || st.Calls != 7 || st.Attempts != 13 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBackoffGrowsAndStopsAtDeadline: waits double (with jitter in
// [b/2, b]); a deadline during a wait ends the call with the last error.
func TestBackoffGrowsAndStopsAtDeadline(t *testing.T) {
	g := testGovernor(ClientConfig{Retry: &RetryPolicy{MaxAttempts: 4, InitialBackoff: 20 * time.Millisecond, MaxBackoff: time.Second}})
	var at []time.Time
	attempt := func() error { at = append(at, time.Now()); return unavailable }
	_ = g.run(context.Background(), "s", true, attempt)
	if len(at) != 4 {
		t.Fatalf("%d attempts", len(at))
	}
	for i, min := range []time.Duration{10, 20, 40} {
		if d := at[i+1].Sub(at[i]); d < min*time.Millisecond {
			t.Errorf("wait %d: %v < %vms", i, d, min)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	g = testGovernor(ClientConfig{Retry: &RetryPolicy{MaxAttempts: 100, InitialBackoff: 10 * time.Millisecond}})
	start := time.Now()
	if err := g.run(ctx, "s", true, func() error { return noResponders }); !errors.Is(err, ErrNoResponders) {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("retries outlived the deadline: %v", d)
	}
}

func TestBreakerPerService(t *testing.T) {
	var changes []string
	g := testGovernor(ClientConfig{Breaker: &BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: 50 * time.Millisecond,
		OnStateChange: func(s, from, to string) { changes = append(changes, s+":"+to) }}})
	ctx := context.Background()
	fail := func() error { return Errorf(Internal, "x") }
	answer := func() error { return Errorf(NotFound, "x") }
	ok := func() error { return nil }
	// Application statuses are answers: they never trip it.
	for range 5 {
		_ = g.run(ctx, "a", false, answer)
	}
	if g.breakerState("a") != "closed" {
		t.Fatal(g.breakerState("a"))
	}
	_ = g.run(ctx, "a", false, fail)
	_ = g.run(ctx, "a", false, fail)
	if err := g.run(ctx, "a", false, ok); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("open breaker: %v", err)
	}
	if err := g.run(ctx, "b", false, ok); err != nil {
		t.Fatalf("service b shares a's breaker: %v", err)
	}
	time.Sleep(60 * time.Millisecond) // the open timeout is the thing under test
	if err := g.run(ctx, "a", false, ok); err != nil {
		t.Fatalf("half-open probe: %v", err)
	}
	if got := g.breakerState("a"); got != "closed" {
		t.Fatal(got)
	}
	want := []string{"a:open", "a:half-open", "a:closed"}
	if len(changes) != 3 || changes[0] != want[0] || changes[1] != want[1] || changes[2] != want[2] {
		t.Fatalf("changes %v", changes)
	}
	if g.breakerState("nobody") != "" {
		t.Fatal("breaker for an uncalled service")
	}
}

func TestRateLimit(t *testing.T) {
	g := testGovernor(ClientConfig{RateLimit: 20, RateBurst: 2})
	ok := func() error { return nil }
	bg := context.Background()
	must(t, g.run(bg, "s", false, ok))
	must(t, g.run(bg, "s", false, ok)) // the burst
	short, cancel := context.WithTimeout(bg, 10*time.Millisecond)
	defer cancel()
	if err := g.run(short, "s", false, ok); !errors.Is(err, ErrRateLimited) || CodeOf(err) != ResourceExhausted {
		t.Fatalf("over the limit with a short deadline: %v", err)
	}
	start := time.Now()
	must(t, g.run(bg, "s", false, ok))
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("no wait for the next turn: %v", d)
	}
	if st := g.stats(); st.RateLimited != 1 || st.RateDelayed != 1 || st.Attempts != 3 {
		t.Fatalf("stats %+v", st)
	}
}
