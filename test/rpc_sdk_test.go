package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/pkg/rpc"
)

// The service the SDK tests call.
type greetRequest struct {
	Name string `json:"name"`
}

type greetReply struct {
	Greeting string `json:"greeting"`
	Instance string `json:"instance,omitempty"`
}

type sleepRequest struct {
	Millis int `json:"millis"`
}

type empty struct{}

type greeterSvc struct {
	instance string
	runs     atomic.Int64 // every handler run
	flaky    atomic.Int64 // Flaky fails while this is positive, counting down
	// sawDeadline is the time left on the handler's ctx in Sleep, in ms.
	sawDeadline atomic.Int64
	slept       atomic.Int64 // Sleep calls that have returned
	// sleeping and maxSleeping: Sleep calls running now, and at most.
	sleeping, maxSleeping atomic.Int64
}

func (g *greeterSvc) Greet(ctx context.Context, req *greetRequest) (*greetReply, error) {
	g.runs.Add(1)
	if req.Name == "" {
		return nil, rpc.Errorf(rpc.InvalidArgument, "name is required")
	}
	return &greetReply{Greeting: "Hello, " + req.Name + "!", Instance: g.instance}, nil
}

func (g *greeterSvc) Sleep(ctx context.Context, req *sleepRequest) (*empty, error) {
	g.runs.Add(1)
	defer g.slept.Add(1)
	n := g.sleeping.Add(1)
	defer g.sleeping.Add(-1)
	for {
		m := g.maxSleeping.Load()
		if n <= m || g.maxSleeping.CompareAndSwap(m, n) {
			break
		}
	}
	if dl, ok := ctx.Deadline(); ok {
		g.sawDeadline.Store(time.Until(dl).Milliseconds())
	}
	select {
	case <-time.After(time.Duration(req.Millis) * time.Millisecond):
		return &empty{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *greeterSvc) Panic(ctx context.Context, req *empty) (*empty, error) {
	g.runs.Add(1)
	panic("boom")
}

func (g *greeterSvc) Flaky(ctx context.Context, req *empty) (*empty, error) {
	g.runs.Add(1)
	if g.flaky.Add(-1) >= 0 {
		return nil, rpc.Errorf(rpc.Unavailable, "not yet")
	}
	return &empty{}, nil
}

func (g *greeterSvc) Upper(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	g.runs.Add(1)
	return wrapperspb.String(strings.ToUpper(req.GetValue())), nil
}

// NotAnEndpoint has another shape: registration leaves it out.
func (g *greeterSvc) NotAnEndpoint() string { return "no" }

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startGreeter serves g as service name on url until the test ends.
func startGreeter(t testing.TB, url, name string, g *greeterSvc, concurrency int) *rpc.Server {
	t.Helper()
	srv := rpc.NewServer(rpc.ServerConfig{
		ConnConfig:  rpc.ConnConfig{URL: url, Logger: quietLogger(), ReconnectMax: 200 * time.Millisecond},
		Concurrency: concurrency,
	})
	if err := srv.Register(g, rpc.Service{Name: name, Version: "1.2.3", Description: "says hello",
		Metadata: map[string]string{"zone": "test"}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func newRPCClient(t testing.TB, cfg rpc.ClientConfig) *rpc.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	c, err := rpc.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t testing.TB, err error, code rpc.Code) *rpc.Error {
	t.Helper()
	var e *rpc.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *rpc.Error", err, err)
	}
	if e.Code != code {
		t.Fatalf("code %v (%v), want %v", e.Code, err, code)
	}
	return e
}

// TestRPCSDKRoundTrip: Call and a typed stub reach the service and back,
// JSON and protobuf; handler statuses, unknown methods and panics arrive
// as their codes; the instance announced itself in its consume arguments.
func TestRPCSDKRoundTrip(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{instance: "a"}
	startGreeter(t, s.URL, "greeter", g, 4)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	ctx := ctxTimeout(t, waitTimeout)

	var reply greetReply
	must(t, c.Call(ctx, "greeter.Greet", &greetRequest{Name: "Ada"}, &reply))
	if reply.Greeting != "Hello, Ada!" {
		t.Fatalf("reply %+v", reply)
	}

	greet := rpc.NewMethod[greetRequest, greetReply](c, "greeter.Greet")
	for i := range 20 {
		r, err := greet.Call(ctx, &greetRequest{Name: fmt.Sprint("n", i)})
		must(t, err)
		if r.Greeting != fmt.Sprintf("Hello, n%d!", i) {
			t.Fatalf("reply %d: %+v", i, r)
		}
	}

	upper := rpc.NewMethod[wrapperspb.StringValue, wrapperspb.StringValue](c, "greeter.Upper")
	pr, err := upper.Call(ctx, wrapperspb.String("proto"))
	must(t, err)
	if pr.GetValue() != "PROTO" {
		t.Fatalf("protobuf reply %q", pr.GetValue())
	}

	_, err = greet.Call(ctx, &greetRequest{})
	if e := wantCode(t, err, rpc.InvalidArgument); e.Message != "name is required" {
		t.Fatalf("message %q", e.Message)
	}
	wantCode(t, c.Call(ctx, "greeter.Nope", &empty{}, nil), rpc.Unimplemented)
	wantCode(t, c.Call(ctx, "greeter.NotAnEndpoint", &empty{}, nil), rpc.Unimplemented)
	wantCode(t, c.Call(ctx, "greeter.Panic", &empty{}, nil), rpc.Internal)
	// The instance survived its handler's panic.
	must(t, c.Call(ctx, "greeter.Greet", &greetRequest{Name: "again"}, &reply))
}

// TestRPCSDKAnnounce: an instance's basic.consume carries the x-service-*
// arguments; the queue is rpc.S, auto-delete, and goes with the last
// instance.
func TestRPCSDKAnnounce(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{}
	srv := startGreeter(t, s.URL, "announce", g, 2)
	ch := mustChannel(t, s.dial(t))
	q, err := ch.QueueDeclarePassive("rpc.announce", false, true, false, false, nil)
	must(t, err)
	if q.Consumers != 1 {
		t.Fatalf("consumers %d", q.Consumers)
	}
	bq, err := s.Broker().VHost("/").Queue("rpc.announce")
	must(t, err)
	cs := bq.Consumers()
	if len(cs) != 1 {
		t.Fatalf("consumers %+v", cs)
	}
	args := cs[0].Args
	if args["x-service-name"] != "announce" || args["x-service-version"] != "1.2.3" ||
		args["x-service-description"] != "says hello" || args["x-service-id"] == "" {
		t.Fatalf("consume args %v", args)
	}
	if got := fmt.Sprint(args["x-service-endpoints"]); got != "[Flaky Greet Panic Sleep Upper]" {
		t.Fatalf("endpoints %s", got)
	}
	if got := fmt.Sprint(args["x-service-metadata"]); got != "map[zone:test]" {
		t.Fatalf("metadata %v", args["x-service-metadata"])
	}
	must(t, srv.Close())
	eventually(t, "rpc.announce deleted with its last instance", func() bool {
		ch := mustChannel(t, s.dial(t))
		_, err := ch.QueueDeclarePassive("rpc.announce", false, true, false, false, nil)
		return err != nil
	})
}

// TestRPCSDKDeadline: the caller's deadline reaches the handler's ctx;
// a call that outlives it fails DEADLINE_EXCEEDED, matching both
// rpc.ErrDeadlineExceeded and context.DeadlineExceeded.
func TestRPCSDKDeadline(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{}
	startGreeter(t, s.URL, "deadline", g, 2)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})

	must(t, c.Call(ctxTimeout(t, 2*time.Second), "deadline.Sleep", &sleepRequest{Millis: 1}, nil))
	if left := g.sawDeadline.Load(); left <= 1000 || left > 2000 {
		t.Fatalf("handler saw %dms left, want about 2000", left)
	}

	start := time.Now()
	err := c.Call(ctxTimeout(t, 150*time.Millisecond), "deadline.Sleep", &sleepRequest{Millis: 5000}, nil)
	wantCode(t, err, rpc.DeadlineExceeded)
	if !errors.Is(err, rpc.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("errors.Is fails for %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("deadline of 150ms took %v", d)
	}

	// The client's default timeout applies to a ctx without a deadline.
	short := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}, Timeout: 100 * time.Millisecond})
	err = short.Call(context.Background(), "deadline.Sleep", &sleepRequest{Millis: 5000}, nil)
	if !errors.Is(err, rpc.ErrDeadlineExceeded) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("default timeout: %v", err)
	}
	// Its timers are pooled: one that fired, or was stopped, must not end
	// a later call early (a loaded machine may still time a call out, but
	// only after its 100ms).
	for range 5 {
		start := time.Now()
		err := short.Call(context.Background(), "deadline.Sleep", &sleepRequest{Millis: 1}, nil)
		if took := time.Since(start); err != nil && took < 90*time.Millisecond {
			t.Fatalf("a call ended after %v by a stale timer: %v", took, err)
		}
	}
}

// TestRPCSDKExpiredRequestNotRun: a request whose x-deadline has passed
// when the instance takes it is not run and gets no reply; bad input
// (no reply_to, no type) is dropped with a log line, a malformed body
// gets INVALID_ARGUMENT, and the instance keeps answering.
func TestRPCSDKExpiredRequestNotRun(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{}
	startGreeter(t, s.URL, "expiry", g, 1)
	ch := mustChannel(t, s.dial(t))
	replyQ := tempQueue(t, ch)
	replies := mustConsume(t, ch, replyQ, "", true)
	req := func(id, typ, replyTo string, hdr map[string]any, body string) {
		mustPublish(t, ch, "", "rpc.expiry", amqp.Publishing{Type: typ, ReplyTo: replyTo, CorrelationId: id,
			ContentType: "application/json", Headers: hdr, Body: []byte(body)})
	}
	past := time.Now().Add(-time.Second).UnixMilli()
	req("late", "expiry.Greet", replyQ, map[string]any{"x-deadline": past}, `{"name":"late"}`)
	req("no-reply-to", "expiry.Greet", "", nil, `{"name":"x"}`)
	req("no-type", "", replyQ, nil, `{"name":"x"}`)
	req("malformed", "expiry.Greet", replyQ, nil, `{"name":`)
	req("bad-deadline", "expiry.Greet", replyQ, map[string]any{"x-deadline": "soon"}, `{"name":"x"}`)
	req("on-time", "expiry.Greet", replyQ, map[string]any{"x-deadline": time.Now().Add(time.Minute).UnixMilli()}, `{"name":"ok"}`)

	got := map[string]amqp.Delivery{}
	for _, d := range recvN(t, replies, 3) {
		got[d.CorrelationId] = d
	}
	if d := got["malformed"]; d.Headers["x-rpc-status"] != "INVALID_ARGUMENT" || d.Headers["x-rpc-error"] == nil {
		t.Fatalf("malformed: %v", d.Headers)
	}
	if d := got["bad-deadline"]; d.Headers["x-rpc-status"] != "INVALID_ARGUMENT" {
		t.Fatalf("bad deadline: %v", d.Headers)
	}
	d := got["on-time"]
	if d.Headers["x-rpc-status"] != "OK" || d.ContentType != "application/json" || !strings.Contains(string(d.Body), "Hello, ok!") {
		t.Fatalf("on-time: %v %q %s", d.Headers, d.ContentType, d.Body)
	}
	select {
	case d := <-replies:
		t.Fatalf("unexpected reply %q", d.CorrelationId)
	case <-time.After(quietPeriod):
	}
	if n := g.runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want 1 (only on-time)", n)
	}
}

// TestRPCSDKNoResponders: a call to a service with no instance fails at
// once with ErrNoResponders (the broker returns the mandatory request).
func TestRPCSDKNoResponders(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	start := time.Now()
	err := c.Call(ctxTimeout(t, 10*time.Second), "nobody.Home", &empty{}, nil)
	if !errors.Is(err, rpc.ErrNoResponders) {
		t.Fatalf("err %v", err)
	}
	wantCode(t, err, rpc.Unavailable)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("no responders took %v: not at once", d)
	}
}

// TestRPCSDKRetries: an idempotent call is retried on UNAVAILABLE and on
// no responders, with backoff; a call not marked idempotent is not.
func TestRPCSDKRetries(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{}
	startGreeter(t, s.URL, "retry", g, 2)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL},
		Retry: &rpc.RetryPolicy{MaxAttempts: 4, InitialBackoff: 10 * time.Millisecond}})
	ctx := ctxTimeout(t, waitTimeout)

	g.flaky.Store(2)
	wantCode(t, c.Call(ctx, "retry.Flaky", &empty{}, nil), rpc.Unavailable)
	if st := c.Stats(); st.Retries != 0 || st.Attempts != 1 {
		t.Fatalf("not idempotent, yet retried: %+v", st)
	}
	must(t, c.Call(ctx, "retry.Flaky", &empty{}, nil, rpc.Idempotent()))
	if st := c.Stats(); st.Retries != 1 || g.runs.Load() != 3 {
		t.Fatalf("stats %+v, runs %d: want 1 retry and 3 runs", st, g.runs.Load())
	}

	flaky := rpc.NewMethod[empty, empty](c, "retry.Flaky", rpc.Idempotent())
	g.flaky.Store(3)
	_, err := flaky.Call(ctx, &empty{})
	must(t, err)
	if st := c.Stats(); st.Retries != 4 {
		t.Fatalf("stats %+v: want 3 more retries", st)
	}

	// No responders is retried too, up to MaxAttempts.
	err = c.Call(ctx, "absent.Method", &empty{}, nil, rpc.Idempotent())
	if !errors.Is(err, rpc.ErrNoResponders) {
		t.Fatalf("err %v", err)
	}
	if st := c.Stats(); st.Retries != 7 {
		t.Fatalf("stats %+v: want 3 retries of the absent service", st)
	}
	// An application error is an answer: never retried.
	wantCode(t, c.Call(ctx, "retry.Greet", &greetRequest{}, nil, rpc.Idempotent()), rpc.InvalidArgument)
	if st := c.Stats(); st.Retries != 7 {
		t.Fatalf("INVALID_ARGUMENT retried: %+v", st)
	}
}

// TestRPCSDKBreaker: consecutive failures open the service's breaker
// (calls then fail at once with ErrCircuitOpen, not sent); after the
// open timeout a probe passes and, succeeding, closes it.
func TestRPCSDKBreaker(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	var transitions atomic.Int64
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL},
		Breaker: &rpc.BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: 300 * time.Millisecond,
			OnStateChange: func(service, from, to string) { transitions.Add(1) }}})
	ctx := ctxTimeout(t, waitTimeout)
	for range 3 {
		if err := c.Call(ctx, "fragile.Greet", &greetRequest{Name: "x"}, nil); !errors.Is(err, rpc.ErrNoResponders) {
			t.Fatalf("err %v", err)
		}
	}
	if st := c.BreakerState("fragile"); st != "open" {
		t.Fatalf("breaker %q after 3 failures", st)
	}
	err := c.Call(ctx, "fragile.Greet", &greetRequest{Name: "x"}, nil)
	if !errors.Is(err, rpc.ErrCircuitOpen) {
		t.Fatalf("open breaker let the call through: %v", err)
	}
	wantCode(t, err, rpc.Unavailable)
	if st := c.Stats(); st.Attempts != 3 || st.BreakerRejected != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Other services have breakers of their own.
	if st := c.BreakerState("other"); st != "" {
		t.Fatalf("other service's breaker %q", st)
	}

	startGreeter(t, s.URL, "fragile", &greeterSvc{}, 1)
	eventually(t, "breaker half-open", func() bool { return c.BreakerState("fragile") == "half-open" })
	must(t, c.Call(ctx, "fragile.Greet", &greetRequest{Name: "x"}, nil))
	if st := c.BreakerState("fragile"); st != "closed" {
		t.Fatalf("breaker %q after a successful probe", st)
	}
	if n := transitions.Load(); n != 3 {
		t.Fatalf("%d state changes, want 3 (open, half-open, closed)", n)
	}
}

// TestRPCSDKRateLimit: beyond its rate the client makes a call wait for
// its turn, or refuses it at once (RESOURCE_EXHAUSTED) when the turn
// would come after the call's deadline.
func TestRPCSDKRateLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	startGreeter(t, s.URL, "limited", &greeterSvc{}, 2)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}, RateLimit: 5, RateBurst: 1})
	greet := rpc.NewMethod[greetRequest, greetReply](c, "limited.Greet")

	_, err := greet.Call(ctxTimeout(t, waitTimeout), &greetRequest{Name: "first"})
	must(t, err)
	_, err = greet.Call(ctxTimeout(t, 50*time.Millisecond), &greetRequest{Name: "refused"})
	if !errors.Is(err, rpc.ErrRateLimited) {
		t.Fatalf("err %v", err)
	}
	wantCode(t, err, rpc.ResourceExhausted)

	start := time.Now()
	for i := range 3 {
		_, err := greet.Call(ctxTimeout(t, waitTimeout), &greetRequest{Name: fmt.Sprint(i)})
		must(t, err)
	}
	// 5 a second: three more calls need at least ~2 more intervals of 200ms.
	if d := time.Since(start); d < 350*time.Millisecond {
		t.Fatalf("3 calls at 5/s took only %v", d)
	}
	if st := c.Stats(); st.RateLimited != 1 || st.RateDelayed < 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRPCSDKBalanceAndDrain: two instances share the load; Shutdown
// stops taking requests, finishes the running one (its caller gets the
// reply), then leaves.
func TestRPCSDKBalanceAndDrain(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	a, b := &greeterSvc{instance: "a"}, &greeterSvc{instance: "b"}
	srvA := startGreeter(t, s.URL, "pool", a, 1)
	startGreeter(t, s.URL, "pool", b, 1)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	ctx := ctxTimeout(t, waitTimeout)
	seen := map[string]int{}
	for range 20 {
		var r greetReply
		must(t, c.Call(ctx, "pool.Greet", &greetRequest{Name: "x"}, &r))
		seen[r.Instance]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Fatalf("load not shared: %v", seen)
	}

	// Occupy both instances, then shut A down while its call runs.
	aRuns, bRuns := a.runs.Load(), b.runs.Load()
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- c.Call(ctx, "pool.Sleep", &sleepRequest{Millis: 300}, nil) }()
	}
	eventually(t, "both instances busy", func() bool { return a.runs.Load() == aRuns+1 && b.runs.Load() == bRuns+1 })
	shut := make(chan error, 1)
	go func() { shut <- srvA.Shutdown(ctxTimeout(t, waitTimeout)) }()
	for range 2 {
		must(t, <-done)
	}
	must(t, <-shut)
	// A has left: every call now goes to B.
	for range 5 {
		var r greetReply
		must(t, c.Call(ctx, "pool.Greet", &greetRequest{Name: "x"}, &r))
		if r.Instance != "b" {
			t.Fatalf("call answered by %q after A's shutdown", r.Instance)
		}
	}
}

// TestRPCSDKReconnect: the broker restarts (same data dir, same address).
// A call in flight fails UNAVAILABLE with ErrConnectionLost; client and
// server reconnect on their own, the server re-announces (re-consumes
// rpc.S, which as a non-durable queue did not survive), and an idempotent
// call retried across the outage succeeds.
func TestRPCSDKReconnect(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, url := startOn(t, dir)
	addr := srv.AMQPAddr().String()
	g := &greeterSvc{}
	startGreeter(t, url, "phoenix", g, 2)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: url, ReconnectMax: 200 * time.Millisecond},
		Retry: &rpc.RetryPolicy{MaxAttempts: 50, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}})
	ctx := ctxTimeout(t, 20*time.Second)
	must(t, c.Call(ctx, "phoenix.Greet", &greetRequest{Name: "before"}, nil))

	inflight := make(chan error, 1)
	go func() { inflight <- c.Call(ctx, "phoenix.Sleep", &sleepRequest{Millis: 10000}, nil) }()
	eventually(t, "the slow call running", func() bool { return g.runs.Load() == 2 })
	stopServer(t, srv)
	err := <-inflight
	if !errors.Is(err, rpc.ErrConnectionLost) {
		t.Fatalf("in-flight call: %v", err)
	}
	wantCode(t, err, rpc.Unavailable)
	// Down: a call not marked idempotent fails at once.
	wantCode(t, c.Call(ctx, "phoenix.Greet", &greetRequest{Name: "down"}, nil), rpc.Unavailable)

	// The same address, which another package's test connecting out may
	// hold for a moment: wait for it.
	var srv2 *app.App
	for deadline := time.Now().Add(10 * time.Second); ; {
		srv2, err = app.New(app.Config{AMQPAddr: addr, DataDir: dir,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		must(t, err)
		if err = srv2.Start(); err == nil || !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			break
		}
		stopServer(t, srv2)
		time.Sleep(100 * time.Millisecond)
	}
	must(t, err)
	t.Cleanup(func() { stopServer(t, srv2) })

	var r greetReply
	must(t, c.Call(ctx, "phoenix.Greet", &greetRequest{Name: "after"}, &r, rpc.Idempotent()))
	if r.Greeting != "Hello, after!" {
		t.Fatalf("reply %+v", r)
	}
}

// BenchmarkRPCSDKCall: round trips through Herald with the SDK on both
// ends (one instance, 16 concurrent, 128-byte name), in parallel.
func BenchmarkRPCSDKCall(b *testing.B) {
	s := startServer(b)
	startGreeter(b, s.URL, "bench", &greeterSvc{}, 16)
	c := newRPCClient(b, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	greet := rpc.NewMethod[greetRequest, greetReply](c, "bench.Greet")
	req := &greetRequest{Name: strings.Repeat("x", 128)}
	b.SetParallelism(8) // 16 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := greet.Call(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// TestRPCSDKExpiresWhileQueued: a request queued behind a busy instance
// (concurrency 1) whose deadline passes before the instance is free is
// never run: the broker drops it at its expiration, and the caller got
// DEADLINE_EXCEEDED when its deadline came.
func TestRPCSDKExpiresWhileQueued(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{}
	startGreeter(t, s.URL, "busy", g, 1)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	slow := make(chan error, 1)
	go func() { slow <- c.Call(ctxTimeout(t, waitTimeout), "busy.Sleep", &sleepRequest{Millis: 400}, nil) }()
	eventually(t, "the instance busy", func() bool { return g.runs.Load() == 1 })
	err := c.Call(ctxTimeout(t, 100*time.Millisecond), "busy.Greet", &greetRequest{Name: "queued"}, nil)
	if !errors.Is(err, rpc.ErrDeadlineExceeded) {
		t.Fatalf("queued call: %v", err)
	}
	must(t, <-slow)
	must(t, c.Call(ctxTimeout(t, waitTimeout), "busy.Greet", &greetRequest{Name: "next"}, nil))
	if n := g.runs.Load(); n != 2 {
		t.Fatalf("%d runs, want 2: the expired request ran", n)
	}
}

// TestRPCSDKChannelErrors: the broker closing the client's channel (a
// request over --max-message-size: 406) fails that call UNAVAILABLE and
// the client goes on with a new channel; a reply to a caller that has
// gone is dropped by the broker and the instance goes on serving.
func TestRPCSDKChannelErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, withMaxMessageSize(4096))
	g := &greeterSvc{}
	startGreeter(t, s.URL, "sturdy", g, 2)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	ctx := ctxTimeout(t, waitTimeout)

	err := c.Call(ctx, "sturdy.Greet", &greetRequest{Name: strings.Repeat("x", 10000)}, nil)
	if !errors.Is(err, rpc.ErrConnectionLost) {
		t.Fatalf("oversized request: %v", err)
	}
	eventually(t, "the client usable again", func() bool {
		return c.Call(ctx, "sturdy.Greet", &greetRequest{Name: "again"}, nil) == nil
	})

	// The instance's consumers belong to its connection: if it had to
	// reconnect, their owner would change.
	owners := func() string {
		q, err := s.Broker().VHost("/").Queue("rpc.sturdy")
		must(t, err)
		var o []string
		for _, c := range q.Consumers() {
			o = append(o, fmt.Sprint(c.Owner))
		}
		return strings.Join(o, ",")
	}
	before := owners()
	gone := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	call := make(chan error, 1)
	go func() { call <- gone.Call(ctx, "sturdy.Sleep", &sleepRequest{Millis: 200}, nil) }()
	runs := g.runs.Load()
	eventually(t, "the slow call running", func() bool { return g.runs.Load() > runs })
	must(t, gone.Close())
	if err := <-call; !errors.Is(err, rpc.ErrClosed) {
		t.Fatalf("call of a closed client: %v", err)
	}
	eventually(t, "the handler answered the vanished caller", func() bool { return g.slept.Load() == 1 })
	for range 5 {
		must(t, c.Call(ctx, "sturdy.Greet", &greetRequest{Name: "still"}, nil))
	}
	if after := owners(); after != before {
		t.Fatalf("the instance reconnected (consumers of %s, then %s)", before, after)
	}
}

// TestRPCSDKConcurrencyLimit: an instance runs at most Concurrency
// requests at once (its prefetch); the others wait in the queue.
func TestRPCSDKConcurrencyLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	g := &greeterSvc{}
	startGreeter(t, s.URL, "narrow", g, 2)
	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	ctx := ctxTimeout(t, waitTimeout)
	errs := make(chan error, 6)
	for range 6 {
		go func() { errs <- c.Call(ctx, "narrow.Sleep", &sleepRequest{Millis: 100}, nil) }()
	}
	for range 6 {
		must(t, <-errs)
	}
	if m := g.maxSleeping.Load(); m != 2 {
		t.Fatalf("at most %d requests ran at once, want 2", m)
	}
}
