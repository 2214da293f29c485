package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

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

type greeter struct {
	instance string
	runs     atomic.Int64 // every handler run
	flaky    atomic.Int64 // Flaky fails while this is positive, counting down
	// sawDeadline is the time left on the handler's ctx in Sleep, in ms.
	sawDeadline atomic.Int64
}

func (g *greeter) Greet(ctx context.Context, req *greetRequest) (*greetReply, error) {
	g.runs.Add(1)
	if req.Name == "" {
		return nil, rpc.Errorf(rpc.InvalidArgument, "name is required")
	}
	return &greetReply{Greeting: "Hello, " + req.Name + "!", Instance: g.instance}, nil
}

func (g *greeter) Sleep(ctx context.Context, req *sleepRequest) (*empty, error) {
	g.runs.Add(1)
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

func (g *greeter) Panic(ctx context.Context, req *empty) (*empty, error) {
	g.runs.Add(1)
	panic("boom")
}

func (g *greeter) Flaky(ctx context.Context, req *empty) (*empty, error) {
	g.runs.Add(1)
	if g.flaky.Add(-1) >= 0 {
		return nil, rpc.Errorf(rpc.Unavailable, "not yet")
	}
	return &empty{}, nil
}

func (g *greeter) Upper(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	g.runs.Add(1)
	return wrapperspb.String(strings.ToUpper(req.GetValue())), nil
}

// NotAnEndpoint has another shape: registration leaves it out.
func (g *greeter) NotAnEndpoint() string { return "no" }

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startGreeter serves g as service name on url until the test ends.
func startGreeter(t testing.TB, url, name string, g *greeter, concurrency int) *rpc.Server {
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
	g := &greeter{instance: "a"}
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
	g := &greeter{}
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
