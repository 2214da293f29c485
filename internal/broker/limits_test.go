package broker

import (
	"errors"
	"testing"
	"time"
)

func TestAdmitConnection(t *testing.T) {
	b := New(Options{})
	b.AddVHost("v")
	if err := b.SetVHostLimit("/", LimitMaxConnections, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.SetUserLimit("u", LimitMaxQueues, 1); err == nil {
		t.Fatal("max-queues accepted as a user limit")
	}
	rel, err := b.AdmitConnection("u", "/")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.AdmitConnection("w", "/")
	if !errors.Is(err, ErrNotAllowed) || err.(*Error).Text != "access to vhost '/' refused for user 'w': connection limit (1) is reached" {
		t.Fatalf("second admission: %v", err)
	}
	if _, err := b.AdmitConnection("w", "v"); err != nil { // other vhost: not limited
		t.Fatal(err)
	}
	rel()
	rel() // idempotent
	if err := b.CheckConnectionLimits("w", "/"); err != nil {
		t.Fatalf("after release: %v", err)
	}
	// Negative: no limit; 0: none allowed.
	must(t, b.SetVHostLimit("/", LimitMaxConnections, -1))
	must(t, b.SetUserLimit("z", LimitMaxConnections, 0))
	if err := b.CheckConnectionLimits("w", "/"); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckConnectionLimits("z", "/"); err == nil {
		t.Fatal("user limit 0 admitted")
	}
	b.SetMaxConnections(1) // one is open (w on v)
	if err := b.CheckConnectionLimits("w", "/"); err == nil {
		t.Fatal("global limit ignored")
	}
	if got := b.UserLimits(); len(got) != 1 || got[0].Name != "z" || got[0].Limits[LimitMaxConnections] != 0 {
		t.Fatalf("UserLimits: %+v", got)
	}
	b.ClearUserLimit("z", "")
	if got := b.UserLimits(); len(got) != 0 {
		t.Fatalf("after clear: %+v", got)
	}
}

func TestMaxQueuesLimit(t *testing.T) {
	b := New(Options{})
	v := b.VHost("/")
	must(t, b.SetVHostLimit("/", LimitMaxQueues, 1))
	if _, err := v.DeclareQueue("a", QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareQueue("a", QueueOptions{}); err != nil {
		t.Fatalf("redeclare: %v", err)
	}
	_, err := v.DeclareQueue("b", QueueOptions{})
	if !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("beyond the limit: %v", err)
	}
	b.ClearVHostLimit("/", LimitMaxQueues)
	if _, err := v.DeclareQueue("b", QueueOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestProtocolCounters(t *testing.T) {
	b := New(Options{})
	c, unregister := b.RegisterConnection(ConnectionInfo{Protocol: "P"})
	c.CountPublish()
	c.CountDeliver(3)
	c.CountAck(2)
	c.SetChannels(4)
	counts, channels := b.ProtocolCounters()
	if counts["P"] != (MessageCounts{1, 3, 2}) || channels["P"] != 4 {
		t.Fatalf("open: %+v %+v", counts, channels)
	}
	unregister()
	counts, channels = b.ProtocolCounters()
	if counts["P"] != (MessageCounts{1, 3, 2}) || channels["P"] != 0 {
		t.Fatalf("closed: %+v %+v", counts, channels)
	}
	var nilConn *Connection
	nilConn.CountPublish() // adapters need not check
}

func TestPublishLimiter(t *testing.T) {
	if NewPublishLimiter(0) != nil {
		t.Fatal("rate 0 must be no limiter")
	}
	var none *PublishLimiter
	if !none.Wait(nil) || none.Throttled() {
		t.Fatal("nil limiter waits")
	}
	l := NewPublishLimiter(100)
	start := time.Now()
	for range 110 { // burst of 100, then 10 at 100/s
		if !l.Wait(nil) {
			t.Fatal("Wait failed")
		}
	}
	if d := time.Since(start); d < 80*time.Millisecond {
		t.Fatalf("110 tokens at 100/s (burst 100) in %v", d)
	}
	stop := make(chan struct{})
	close(stop)
	l.tokens, l.last = 0, time.Now().Add(time.Second) // no token for a second
	if l.Wait(stop) {
		t.Fatal("Wait without a token after stop")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestPublishLimiterOnBrokerClock: the broker's limiter refills on the
// broker's clock, so rates are tested without sleeping.
func TestPublishLimiterOnBrokerClock(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	b := New(Options{Now: func() time.Time { return now }})
	defer b.Close()
	l := b.NewPublishLimiter(10)
	for i := range 10 {
		if ok, _ := l.Take(); !ok {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	ok, retry := l.Take()
	if ok || retry != 100*time.Millisecond || !l.Throttled() {
		t.Fatalf("after the burst: ok %v retry %v throttled %v; want refused, 100ms", ok, retry, l.Throttled())
	}
	now = now.Add(100 * time.Millisecond)
	if ok, _ := l.Take(); !ok {
		t.Fatal("no token 100ms later at 10/s")
	}
	now = now.Add(time.Second)
	if !l.Idle() {
		t.Fatal("not idle after a second without publishes")
	}
}
