package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/heraldmq/herald/pkg/rpc"
)

// echoService is the service rpc-sdk calls: Echo answers the request's
// bytes.
type echoService struct{}

func (*echoService) Echo(_ context.Context, req *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	return req, nil
}

// protoBody returns a BytesValue whose protobuf encoding is exactly size
// bytes (size >= 2), so rpc-sdk puts the same bytes on the wire as the
// other scenarios' bodies of that size.
func protoBody(size int) *wrapperspb.BytesValue {
	for n := size - 2; n >= 0; n-- {
		v := &wrapperspb.BytesValue{Value: make([]byte, n)}
		if proto.Size(v) == size {
			return v
		}
		if proto.Size(v) < size {
			// A varint length boundary skipped size: the nearest larger fits.
			return &wrapperspb.BytesValue{Value: make([]byte, n+1)}
		}
	}
	return &wrapperspb.BytesValue{}
}

// callLoop runs cfg.Callers goroutines that each call once at a time until
// the senders stop, measuring round trips per second and call latency
// (warmup, window, drain as the other scenarios). call returns an error for
// a call that failed; failures are counted as lost.
func (r *run) callLoop(res Result, call func(caller int) error) (Result, error) {
	cfg := r.cfg
	m := &refMeter{}
	var wg sync.WaitGroup
	var failed atomic.Uint64
	var firstFailure atomic.Pointer[string]
	start := make(chan struct{})
	for i := range cfg.Callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-start:
			case <-r.stopSend:
				return
			}
			for !r.sendStopped.Load() {
				t0 := time.Now().UnixNano()
				m.sent.Add(1)
				if err := call(i); err != nil {
					failed.Add(1)
					why := err.Error()
					firstFailure.CompareAndSwap(nil, &why)
					select { // a refused call must not spin
					case <-r.stopSend:
					case <-time.After(10 * time.Millisecond):
					}
					continue
				}
				m.done(r, t0, 0)
			}
		}()
	}
	w, err := r.measure(m, newProgress(r, m), func() { close(start) })
	r.stopSending()
	drainStart := time.Now()
	if limit := cfg.RPCTimeout + 2*time.Second; !waitFor(&wg, limit) {
		r.warn("callers did not finish within %v", limit)
	}
	res.DrainTime = time.Since(drainStart)
	if err != nil {
		return res, err
	}
	r.fill(&res, w)
	m.fillLatency(&res)
	res.Sent, res.Received = m.counts()
	res.Expected = res.Sent
	res.Lost = failed.Load()
	if f := firstFailure.Load(); f != nil {
		r.warn("%s calls failed; one of them: %s", FormatCount(res.Lost), *f)
	}
	res.Warnings = r.takeWarnings()
	return res, nil
}

// runRPCSDK: service instances and one client of pkg/rpc against an AMQP
// broker (Herald, or RabbitMQ: the convention is plain AMQP).
func runRPCSDK(r *run) (Result, error) {
	cfg := r.cfg
	res := r.newResult()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn := rpc.ConnConfig{URL: cfg.URL, Logger: quiet}
	service := strings.TrimSuffix(r.name("svc"), "-")
	var servers []*rpc.Server
	defer func() {
		for _, s := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.Shutdown(ctx)
			cancel()
		}
	}()
	for i := range cfg.Consumers {
		s := rpc.NewServer(rpc.ServerConfig{ConnConfig: conn})
		if err := s.Register(&echoService{}, rpc.Service{Name: service, Version: "1.0.0", ID: fmt.Sprintf("bench-%d", i)}); err != nil {
			return res, err
		}
		if err := s.Start(); err != nil {
			return res, fmt.Errorf("service instance %d: %w", i, err)
		}
		servers = append(servers, s)
	}
	client, err := rpc.NewClient(rpc.ClientConfig{ConnConfig: conn, Timeout: cfg.RPCTimeout})
	if err != nil {
		return res, fmt.Errorf("rpc client: %w", err)
	}
	defer client.Close()
	echo := rpc.NewMethod[wrapperspb.BytesValue, wrapperspb.BytesValue](client, service+".Echo")
	req := protoBody(cfg.Size)
	want := len(req.Value)
	// The instances announce themselves on their own connections: wait
	// until a call goes through rather than failing the first ones.
	if err := awaitFirstCall(r.ctx, cfg.RPCTimeout, func(ctx context.Context) error {
		_, err := echo.Call(ctx, req)
		return err
	}); err != nil {
		return res, fmt.Errorf("the service does not answer: %w", err)
	}
	return r.callLoop(res, func(int) error {
		// The deadline is the client's Timeout (--rpc-timeout), as
		// nats-rpc passes its timeout to nc.Request.
		resp, err := echo.Call(context.Background(), req)
		if err != nil {
			return err
		}
		if len(resp.Value) != want {
			return fmt.Errorf("reply of %d bytes, want %d", len(resp.Value), want)
		}
		return nil
	})
}

// awaitFirstCall retries call until it succeeds, ctx ends or limit passes.
func awaitFirstCall(ctx context.Context, limit time.Duration, call func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := call(cctx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// dialNATS connects to a NATS server, failing fast when it is not there.
func dialNATS(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url, nats.Name("herald-bench "+name), nats.Timeout(setupConnectTimeout),
		nats.MaxReconnects(0), nats.NoCallbacksAfterClientClose())
	if err != nil {
		return nil, fmt.Errorf("%s: cannot connect to %s: %w", name, redactURL(url), err)
	}
	return nc, nil
}

// runNATSRPC: NATS core request/reply with nats.go, the workload of
// rpc-sdk. The responders echo the request; the callers share one
// connection (nc.Request multiplexes over one reply subscription, the
// client's intended use, as one rpc.Client is pkg/rpc's).
func runNATSRPC(r *run) (Result, error) {
	cfg := r.cfg
	res := r.newResult()
	subject := "rpc." + strings.TrimSuffix(r.name("svc"), "-")
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := range cfg.Consumers {
		nc, err := dialNATS(cfg.URL, fmt.Sprintf("responder %d", i))
		if err != nil {
			return res, err
		}
		conns = append(conns, nc)
		// A queue group, so several responders share the requests as
		// competing AMQP consumers do.
		if _, err := nc.QueueSubscribe(subject, "bench", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
			return res, fmt.Errorf("responder %d: subscribe: %w", i, err)
		}
		if err := nc.Flush(); err != nil {
			return res, fmt.Errorf("responder %d: %w", i, err)
		}
	}
	nc, err := dialNATS(cfg.URL, "callers")
	if err != nil {
		return res, err
	}
	conns = append(conns, nc)
	body := NewBody(cfg.Size)
	if err := awaitFirstCall(r.ctx, cfg.RPCTimeout, func(ctx context.Context) error {
		_, err := nc.RequestWithContext(ctx, subject, body)
		return err
	}); err != nil {
		return res, fmt.Errorf("no responder answers: %w", err)
	}
	return r.callLoop(res, func(int) error {
		m, err := nc.Request(subject, body, cfg.RPCTimeout)
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) {
				return fmt.Errorf("no reply within --rpc-timeout %v", cfg.RPCTimeout)
			}
			return err
		}
		if len(m.Data) != len(body) {
			return fmt.Errorf("reply of %d bytes, want %d", len(m.Data), len(body))
		}
		return nil
	})
}
