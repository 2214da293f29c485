package bench

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func TestNormalizeRef(t *testing.T) {
	norm := func(scenario string, edit func(*Config)) (Config, error) {
		c := DefaultConfig()
		c.Scenario = scenario
		if edit != nil {
			edit(&c)
		}
		return c.Normalize()
	}
	c, err := norm(ScenarioRPCSDK, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != DefaultURL || c.Callers != 16 || c.Consumers != 1 || c.Size != 128 {
		t.Errorf("rpc-sdk defaults: %+v", c)
	}
	if d := Describe(c); d != "pkg/rpc: 16 callers on 1 client -> 1 service instance, 128 B protobuf" {
		t.Errorf("describe: %s", d)
	}
	if c, err = norm(ScenarioNATSRPC, nil); err != nil || c.URL != DefaultNATSURL {
		t.Errorf("nats-rpc gets the local NATS URL by default: %q, %v", c.URL, err)
	}
	if c, err = norm(ScenarioStreamReplay, nil); err != nil || c.Messages != DefaultReplayMessages || c.Prefetch != DefaultPrefetch {
		t.Errorf("stream-replay defaults: %+v, %v", c, err)
	}
	if c, err = norm(ScenarioStreamTail, func(c *Config) { c.URL = "nats://127.0.0.1:4222" }); err != nil || c.Rate != DefaultLatencyRate {
		t.Errorf("stream-tail defaults: %+v, %v", c, err)
	}
	if d := Describe(c); !strings.Contains(d, "1,000 msg/s -> JetStream stream (file storage)") {
		t.Errorf("describe: %s", d)
	}
	if c, err = norm(ScenarioStreamPublish, func(c *Config) { c.Prefetch = 0 }); err != nil || c.Prefetch == 0 || !c.Confirm {
		t.Errorf("a stream consumer always has a prefetch and publishes confirm: %+v, %v", c, err)
	}
	for _, tc := range []struct {
		scenario string
		edit     func(*Config)
		want     string
	}{
		{ScenarioRPCSDK, func(c *Config) { c.URL = "nats://127.0.0.1:4222" }, ScenarioNATSRPC},
		{ScenarioNATSRPC, func(c *Config) { c.URL = "amqp://guest:guest@127.0.0.1:5672/" }, "nats://"},
		{ScenarioRPCSDK, func(c *Config) { c.Rate = 100 }, "--rate"},
		{ScenarioRPCSDK, func(c *Config) { c.DirectReplyTo = true }, "--direct-reply-to"},
		{ScenarioStreamReplay, func(c *Config) { c.AutoAck = true }, "--auto-ack"},
		{ScenarioStreamPublish, func(c *Config) { c.Messages = 10 }, "--messages"},
		{ScenarioStreamReplay, func(c *Config) { c.Messages = -1 }, "--messages"},
		{ScenarioStreamReplay, func(c *Config) { c.Size = 8 }, "--size"},
		{ScenarioStreamTail, func(c *Config) { c.URL = "mqtt://x" }, "--url"},
		{ScenarioStreamTail, func(c *Config) { c.AckEvery = 5000 }, "--ack-every"},
	} {
		if _, err := norm(tc.scenario, tc.edit); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error naming %s, got %v", tc.scenario, tc.want, err)
		}
	}
}

// protoBody puts exactly size bytes on the wire, except where protobuf's
// length prefix cannot (130 B: 127 needs a 1-byte length, 128 a 2-byte one).
func TestProtoBody(t *testing.T) {
	for _, size := range []int{HeaderSize, 64, 128, 129, 131, 1024, 4096} {
		if got := proto.Size(protoBody(size)); got != size {
			t.Errorf("protoBody(%d) encodes to %d bytes", size, got)
		}
	}
	if got := proto.Size(protoBody(130)); got != 131 {
		t.Errorf("protoBody(130) encodes to %d bytes, want the nearest larger, 131", got)
	}
}

// memStream is an in-memory streamSys: publishes append (and confirm at
// once, or nack every nackEvery-th), consumers read by offset.
type memStream struct {
	mu        sync.Mutex
	msgs      [][]byte
	nackEvery int
	published int
	consumers atomic.Int32
}

func (s *memStream) newPublisher(int) (streamPub, error) { return s, nil }

func (s *memStream) publish(body []byte) (func() error, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.published++
	if s.nackEvery > 0 && s.published%s.nackEvery == 0 {
		return func() error { return errNacked }, nil
	}
	s.msgs = append(s.msgs, append([]byte(nil), body...))
	return func() error { return nil }, nil
}

func (s *memStream) consume(_ int, first bool, stop <-chan struct{}, each func([]byte) bool) error {
	s.consumers.Add(1)
	s.mu.Lock()
	next := len(s.msgs)
	s.mu.Unlock()
	if first {
		next = 0
	}
	for {
		s.mu.Lock()
		batch := s.msgs[next:]
		s.mu.Unlock()
		for _, b := range batch {
			next++
			if !each(b) {
				return nil
			}
		}
		select {
		case <-stop:
			return nil
		case <-time.After(time.Millisecond):
		}
	}
}

func (s *memStream) close() {}

func testRun(t *testing.T, scenario string, edit func(*Config)) *run {
	t.Helper()
	c := DefaultConfig()
	c.Scenario = scenario
	c.Duration, c.Warmup, c.Drain = 300*time.Millisecond, 100*time.Millisecond, 2*time.Second
	if edit != nil {
		edit(&c)
	}
	c, err := c.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	return newRun(t.Context(), c, io.Discard)
}

func TestStreamPublishCountsConfirmsAndNacks(t *testing.T) {
	r := testRun(t, ScenarioStreamPublish, func(c *Config) { c.Producers = 2; c.ConfirmWindow = 10 })
	sys := &memStream{nackEvery: 100}
	res, err := runStreamPublish(r, sys, r.newResult())
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Confirmed+res.Nacked != res.Sent || res.Unconfirmed != 0 {
		t.Fatalf("sent %d, confirmed %d, nacked %d, unconfirmed %d", res.Sent, res.Confirmed, res.Nacked, res.Unconfirmed)
	}
	if res.Nacked != res.Sent/100 {
		t.Errorf("nacked %d of %d, want every 100th", res.Nacked, res.Sent)
	}
	if res.MsgsPerSec <= 0 || res.ConfirmLatency == nil || res.ConfirmLatency.Count == 0 {
		t.Errorf("no rate or confirm latency: %+v", res)
	}
}

func TestStreamReplayReadsEverythingFromFirst(t *testing.T) {
	r := testRun(t, ScenarioStreamReplay, func(c *Config) { c.Messages = 5000; c.Consumers = 3 })
	sys := &memStream{}
	res, err := runStreamReplay(r, sys, r.newResult())
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 5000 || res.Confirmed != 5000 || len(sys.msgs) != 5000 {
		t.Fatalf("filled: sent %d, confirmed %d, stored %d", res.Sent, res.Confirmed, len(sys.msgs))
	}
	if res.Received != 15000 || res.Expected != 15000 || res.Lost != 0 || res.OutOfOrder != 0 {
		t.Fatalf("replayed %d of %d, lost %d, out of order %d", res.Received, res.Expected, res.Lost, res.OutOfOrder)
	}
	if sys.consumers.Load() != 3 || res.MsgsPerSec <= 0 || res.Warmup == nil {
		t.Errorf("consumers %d, rate %.0f, fill %+v", sys.consumers.Load(), res.MsgsPerSec, res.Warmup)
	}
}

func TestStreamTailMeasuresPublishToDelivery(t *testing.T) {
	r := testRun(t, ScenarioStreamTail, func(c *Config) { c.Rate = 500 })
	res, err := runStreamTail(r, &memStream{}, r.newResult())
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received != res.Sent || res.Lost != 0 || res.OutOfOrder != 0 || res.Confirmed != res.Sent {
		t.Fatalf("sent %d, received %d, confirmed %d, lost %d, out of order %d", res.Sent, res.Received, res.Confirmed, res.Lost, res.OutOfOrder)
	}
	if res.Count == 0 || res.P99 <= 0 || res.ScheduleLatency == nil {
		t.Errorf("no latency: %+v", res.LatencySummary)
	}
	// Paced at 500/s for 0.4s: about 200 publishes, not thousands.
	if res.Sent > 400 {
		t.Errorf("sent %d at --rate 500 over 0.4s", res.Sent)
	}
}

func TestCallLoopCountsFailuresAsLost(t *testing.T) {
	r := testRun(t, ScenarioRPCSDK, func(c *Config) { c.Callers = 4 })
	var calls atomic.Uint64
	res, err := r.callLoop(r.newResult(), func(int) error {
		if calls.Add(1)%50 == 0 {
			return errors.New("boom")
		}
		time.Sleep(100 * time.Microsecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent == 0 || res.Received+res.Lost != res.Sent || res.Lost == 0 {
		t.Fatalf("sent %d, received %d, lost %d", res.Sent, res.Received, res.Lost)
	}
	if res.MsgsPerSec <= 0 || res.P50 <= 0 || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "boom") {
		t.Errorf("rate %.0f, p50 %v, warnings %q", res.MsgsPerSec, res.P50, res.Warnings)
	}
}

func TestAwaitFirstCallRetries(t *testing.T) {
	n := 0
	err := awaitFirstCall(context.Background(), 5*time.Second, func(context.Context) error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("err %v after %d calls", err, n)
	}
	if err := awaitFirstCall(context.Background(), 50*time.Millisecond, func(context.Context) error { return errors.New("never") }); err == nil {
		t.Fatal("want the last error once the limit passed")
	}
}
