package rpc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

const (
	defaultTimeout         = 30 * time.Second
	defaultMaxAttempts     = 3
	defaultInitialBackoff  = 50 * time.Millisecond
	defaultMaxBackoff      = 2 * time.Second
	defaultBreakerFailures = 5
	defaultBreakerOpen     = 10 * time.Second
)

// ClientConfig configures a Client. Governance is all optional: without
// Retry, Breaker and RateLimit a call is one attempt, sent at once.
type ClientConfig struct {
	ConnConfig
	// Timeout is the deadline of a call whose ctx has none; default 30s,
	// negative for none (then a call with no deadline waits for ever and
	// its request never expires).
	Timeout time.Duration
	// Retry applies to calls marked Idempotent(); nil means the default
	// policy (3 attempts, backoff from 50ms to 2s).
	Retry *RetryPolicy
	// Breaker, when set, gives every service its own circuit breaker.
	Breaker *BreakerConfig
	// RateLimit, when positive, is the calls a second this client may
	// start (burst RateBurst, at least 1); a call waits for its turn, or
	// fails RESOURCE_EXHAUSTED (ErrRateLimited) at once if its turn would
	// come after its deadline.
	RateLimit rate.Limit
	RateBurst int
}

func (c *ClientConfig) defaults() {
	c.ConnConfig.defaults()
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Retry == nil {
		c.Retry = &RetryPolicy{}
	}
	if c.Retry.MaxAttempts <= 0 {
		c.Retry.MaxAttempts = defaultMaxAttempts
	}
	if c.Retry.InitialBackoff <= 0 {
		c.Retry.InitialBackoff = defaultInitialBackoff
	}
	if c.Retry.MaxBackoff < c.Retry.InitialBackoff {
		c.Retry.MaxBackoff = max(defaultMaxBackoff, c.Retry.InitialBackoff)
	}
	if c.RateBurst < 1 {
		c.RateBurst = 1
	}
}

// RetryPolicy: an idempotent call is retried, with exponential backoff and
// jitter, only when it certainly or probably did not run: no responders,
// a lost connection, or an UNAVAILABLE reply.
type RetryPolicy struct {
	// MaxAttempts counts the first attempt; default 3.
	MaxAttempts int
	// InitialBackoff doubles after each attempt up to MaxBackoff; each
	// wait is drawn uniformly from [b/2, b]. Defaults 50ms and 2s.
	InitialBackoff, MaxBackoff time.Duration
}

// BreakerConfig configures the per-service circuit breakers
// (sony/gobreaker): closed, open after ConsecutiveFailures failed calls
// in a row, half-open after OpenTimeout (HalfOpenRequests probe calls
// pass; a success closes it, a failure opens it again). A failure is a
// status that says the service is unwell: UNAVAILABLE (no responders, a
// lost connection), DEADLINE_EXCEEDED, INTERNAL, UNKNOWN,
// RESOURCE_EXHAUSTED, DATA_LOSS. Application statuses such as NOT_FOUND
// or INVALID_ARGUMENT are answers, not failures; a cancelled call does
// not count.
type BreakerConfig struct {
	ConsecutiveFailures uint32        // default 5
	OpenTimeout         time.Duration // default 10s
	HalfOpenRequests    uint32        // default 1
	// Interval, when positive, clears the counts this often while closed.
	Interval time.Duration
	// OnStateChange is told of every transition ("closed", "open",
	// "half-open"); the client also logs it at Info.
	OnStateChange func(service, from, to string)
}

// CallOption modifies one call.
type CallOption func(*callOptions)

type callOptions struct {
	idempotent bool
}

// Idempotent marks a call as safe to run more than once, which lets the
// client retry it (see RetryPolicy).
func Idempotent() CallOption { return func(o *callOptions) { o.idempotent = true } }

// ClientStats counts what governance did since the client started.
type ClientStats struct {
	Calls           uint64 // calls started
	Attempts        uint64 // requests sent (calls plus retries, minus refusals)
	Retries         uint64 // attempts after the first
	RateLimited     uint64 // calls refused by the rate limit
	RateDelayed     uint64 // calls the rate limit made wait
	BreakerRejected uint64 // calls refused by an open breaker
}

// governor applies the rate limit, the breaker and the retry policy
// around each attempt of a call.
type governor struct {
	cfg     *ClientConfig
	limiter *rate.Limiter // nil: no limit

	calls, attempts, retries, rateLimited, rateDelayed, breakerRejected atomic.Uint64

	mu       sync.Mutex
	breakers map[string]*gobreaker.CircuitBreaker[struct{}]
}

func newGovernor(cfg *ClientConfig) *governor {
	g := &governor{cfg: cfg, breakers: map[string]*gobreaker.CircuitBreaker[struct{}]{}}
	if cfg.RateLimit > 0 {
		g.limiter = rate.NewLimiter(cfg.RateLimit, cfg.RateBurst)
	}
	return g
}

func (g *governor) run(ctx context.Context, service string, idempotent bool, attempt func() error) error {
	g.calls.Add(1)
	if err := g.admit(ctx); err != nil {
		return err
	}
	p := g.cfg.Retry
	backoff := p.InitialBackoff
	for n := 1; ; n++ {
		err := g.through(service, attempt)
		if err == nil || !idempotent || n >= p.MaxAttempts || !retryable(err) {
			return err
		}
		t := time.NewTimer(jitter(backoff))
		select {
		case <-ctx.Done():
			t.Stop()
			// The last attempt's failure says more than "deadline".
			return err
		case <-t.C:
		}
		backoff = min(backoff*2, p.MaxBackoff)
		g.retries.Add(1)
		g.cfg.Logger.Debug("rpc: retrying", "service", service, "attempt", n+1, "after", err)
	}
}

// admit waits for the rate limit. rate.Limiter.Wait refuses at once when
// the wait would outlast ctx's deadline, which is what a caller wants: a
// fast RESOURCE_EXHAUSTED rather than a slow DEADLINE_EXCEEDED.
func (g *governor) admit(ctx context.Context) error {
	if g.limiter == nil {
		return nil
	}
	if g.limiter.Allow() {
		return nil
	}
	if err := g.limiter.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx.Err())
		}
		g.rateLimited.Add(1)
		return newError(ResourceExhausted, ErrRateLimited, "client rate limit: no turn before the deadline")
	}
	g.rateDelayed.Add(1)
	return nil
}

func (g *governor) through(service string, attempt func() error) error {
	cb := g.breaker(service)
	if cb == nil {
		g.attempts.Add(1)
		return attempt()
	}
	_, err := cb.Execute(func() (struct{}, error) {
		g.attempts.Add(1)
		return struct{}{}, attempt()
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		g.breakerRejected.Add(1)
		return newError(Unavailable, ErrCircuitOpen, "circuit breaker for "+service+" is "+cb.State().String())
	}
	return err
}

func (g *governor) breaker(service string) *gobreaker.CircuitBreaker[struct{}] {
	bc := g.cfg.Breaker
	if bc == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if cb, ok := g.breakers[service]; ok {
		return cb
	}
	failures := bc.ConsecutiveFailures
	if failures == 0 {
		failures = defaultBreakerFailures
	}
	open := bc.OpenTimeout
	if open <= 0 {
		open = defaultBreakerOpen
	}
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        service,
		MaxRequests: bc.HalfOpenRequests,
		Interval:    bc.Interval,
		Timeout:     open,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		OnStateChange: func(name string, from, to gobreaker.State) {
			g.cfg.Logger.Info("rpc: circuit breaker", "service", name, "from", from.String(), "to", to.String())
			if bc.OnStateChange != nil {
				bc.OnStateChange(name, from.String(), to.String())
			}
		},
		IsSuccessful: func(err error) bool { return !breakerFailure(err) },
		IsExcluded:   func(err error) bool { return CodeOf(err) == Canceled },
	})
	g.breakers[service] = cb
	return cb
}

func (g *governor) breakerState(service string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cb, ok := g.breakers[service]; ok {
		return cb.State().String()
	}
	return ""
}

func (g *governor) stats() ClientStats {
	return ClientStats{
		Calls: g.calls.Load(), Attempts: g.attempts.Load(), Retries: g.retries.Load(),
		RateLimited: g.rateLimited.Load(), RateDelayed: g.rateDelayed.Load(),
		BreakerRejected: g.breakerRejected.Load(),
	}
}

// retryable: the request certainly or probably did not run. A breaker
// refusal or a closed client is UNAVAILABLE too, but retrying cannot help.
func retryable(err error) bool {
	if errors.Is(err, ErrCircuitOpen) || errors.Is(err, ErrClosed) {
		return false
	}
	return CodeOf(err) == Unavailable
}

func breakerFailure(err error) bool {
	switch CodeOf(err) {
	case OK, Canceled, InvalidArgument, NotFound, AlreadyExists, PermissionDenied,
		FailedPrecondition, Aborted, OutOfRange, Unimplemented, Unauthenticated:
		return false
	}
	return true
}
