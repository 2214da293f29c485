package broker

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable broker clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func serviceArgs(id, version string) Table {
	return Table{
		"x-service-name": "calc", "x-service-version": version, "x-service-id": id,
		"x-service-description": "adds numbers", "x-service-endpoints": []any{"Add", "Sub"},
		"x-service-metadata": Table{"zone": "a", "n": int32(3)},
	}
}

func TestServicesListsInstancesFromConsumers(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := New(Options{Now: clk.now})
	defer b.Close()
	v := b.VHost(DefaultVHost)
	q, err := v.DeclareQueue("rpc.calc", QueueOptions{AutoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	mustQueue(t, v, "plain")
	if got := b.Services(""); len(got) != 0 {
		t.Fatalf("services before any instance: %+v", got)
	}
	c1, err := q.Consume(ConsumerOptions{Tag: "t1", Owner: 7, Prefetch: 4, Args: serviceArgs("i1", "1.2.0"), Sink: &fakeSink{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Consume(ConsumerOptions{Tag: "t2", Owner: 8, Sink: &fakeSink{}}); err != nil {
		t.Fatal(err)
	}
	svcs := b.Services("")
	if len(svcs) != 1 || svcs[0].Name != "calc" || svcs[0].VHost != "/" || len(svcs[0].Instances) != 2 {
		t.Fatalf("services: %+v", svcs)
	}
	in := svcs[0].Instances[0]
	if in.ID != "i1" || in.Version != "1.2.0" || len(in.Endpoints) != 2 || in.Endpoints[1] != "Sub" ||
		in.Metadata["zone"] != "a" || in.Metadata["n"] != "3" || in.Owner != 7 || in.Prefetch != 4 || !in.Since.Equal(clk.t) {
		t.Fatalf("instance i1: %+v", in)
	}
	if anon := svcs[0].Instances[1]; anon.ID != "t2" || anon.Version != "" {
		t.Fatalf("an instance without an announcement is named by its tag: %+v", anon)
	}
	if svcs[0].Description != "adds numbers" {
		t.Fatalf("description %q", svcs[0].Description)
	}
	c1.Cancel()
	si, ok := b.Service("/", "calc")
	if !ok || len(si.Instances) != 1 || si.Instances[0].ID != "t2" {
		t.Fatalf("after i1 left: %+v %v", si, ok)
	}
	if _, ok := b.Service("/", "nope"); ok {
		t.Fatal("unknown service found")
	}
	if _, ok := b.Service("nope", "calc"); ok {
		t.Fatal("service found in an unknown vhost")
	}
	if len(b.Services("other")) != 0 {
		t.Fatal("services listed for another vhost")
	}
}

func TestServiceStatsCountRequestsRepliesAndExpiry(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	b := New(Options{Now: clk.now})
	defer b.Close()
	v := b.VHost(DefaultVHost)
	q := mustQueue(t, v, "rpc.calc")
	sink := &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Tag: "t1", Args: serviceArgs("i1", "1.0.0"), Sink: sink}); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	req := func(corr string) {
		t.Helper()
		m := &Message{RoutingKey: "rpc.calc", Properties: Properties{CorrelationID: corr, ReplyTo: "caller", Type: "calc.Add"}}
		if n, err := p.Publish(m); err != nil || n != 1 {
			t.Fatalf("request: %d %v", n, err)
		}
	}
	reply := func(corr, status string) {
		t.Helper()
		m := &Message{RoutingKey: "caller", Properties: Properties{CorrelationID: corr, Headers: Table{RPCStatusHeader: status}}}
		if _, err := p.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	req("a")
	req("b")
	req("c")
	clk.advance(10 * time.Millisecond)
	reply("a", "OK")
	clk.advance(20 * time.Millisecond)
	reply("b", "NOT_FOUND")
	reply("b", "OK")      // a second reply to the same request is not counted
	reply("zzz", "OK")    // nor one to no request
	reply("c", "")        // nor a message without a status
	reply("c", "UNKNOWN") // c answered at 30ms
	si, _ := b.Service("/", "calc")
	st := si.Stats
	if st.Requests != 3 || st.Replies["OK"] != 1 || st.Replies["NOT_FOUND"] != 1 || st.Replies["UNKNOWN"] != 1 || len(st.Replies) != 3 {
		t.Fatalf("service stats: %+v", st)
	}
	if st.AvgMs < 23.3 || st.AvgMs > 23.4 || st.P99Ms != 30 {
		t.Fatalf("latency: avg %v p99 %v, want 23.33 and 30", st.AvgMs, st.P99Ms)
	}
	if is := si.Instances[0].Stats; is.Requests != 3 || is.Replies["OK"] != 1 || is.P99Ms != 30 {
		t.Fatalf("instance stats: %+v", is)
	}
	if b.services.len() != 0 {
		t.Fatalf("%d requests still awaiting a reply", b.services.len())
	}

	// A request that expires while queued (the instance is busy).
	sink.mu.Lock()
	sink.full = true
	sink.mu.Unlock()
	m := &Message{RoutingKey: "rpc.calc", Properties: Properties{CorrelationID: "d", ReplyTo: "caller", Expiration: "5"}}
	if _, err := p.Publish(m); err != nil {
		t.Fatal(err)
	}
	clk.advance(10 * time.Millisecond)
	q.kind.(*classicQueue).dispatch()
	if si, _ := b.Service("/", "calc"); si.Stats.Expired != 1 || si.Stats.Requests != 3 {
		t.Fatalf("after an expiry: %+v", si.Stats)
	}
}

func TestCallStatsP99AndStatusBound(t *testing.T) {
	var s callStats
	for i := 1; i <= 100; i++ {
		s.reply("OK", time.Duration(i)*time.Millisecond)
	}
	got := s.snapshot()
	if got.P99Ms != 99 || got.AvgMs != 50.5 || got.Replies["OK"] != 100 {
		t.Fatalf("%+v", got)
	}
	// The window keeps the most recent times only.
	for range latencyWindow {
		s.reply("OK", time.Millisecond)
	}
	if got := s.snapshot(); got.P99Ms != 1 {
		t.Fatalf("p99 over the window: %v", got.P99Ms)
	}
	for i := range 2 * maxStatuses {
		s.reply(string(rune('A'+i)), 0)
	}
	if got := s.snapshot(); len(got.Replies) != maxStatuses+1 || got.Replies["OTHER"] == 0 {
		t.Fatalf("statuses are bounded: %d %v", len(got.Replies), got.Replies["OTHER"])
	}
}

func TestReplyTableIsBounded(t *testing.T) {
	var tb replyTable
	svc := newServiceQueue("rpc.x")
	at := int64(0)
	key := func(i int) replyKey { return replyKey{replyTo: "r", corr: strconv.Itoa(i)} }
	// Every request answered except the first: the order slice stays small.
	tb.expect(key(0), pending{svc: svc, at: at})
	for i := 1; i < 10000; i++ {
		at++
		tb.expect(key(i), pending{svc: svc, at: at})
		tb.answer(key(i), "OK", at)
	}
	if tb.len() != 1 || len(tb.order) > 200 {
		t.Fatalf("len %d, order %d", tb.len(), len(tb.order))
	}
	// Unanswered requests beyond maxPending are forgotten, oldest first.
	for i := range maxPending + 10 {
		at++
		tb.expect(replyKey{replyTo: "s", corr: "s" + strconv.Itoa(i)}, pending{svc: svc, at: at})
	}
	if tb.len() > maxPending {
		t.Fatalf("len %d > %d", tb.len(), maxPending)
	}
	// And any older than maxPendingAge.
	tb.expect(key(-1), pending{svc: svc, at: at + int64(maxPendingAge) + 1})
	if tb.len() != 1 {
		t.Fatalf("after aging: %d", tb.len())
	}
	if svc.stats.replied != 9999 {
		t.Fatalf("replies %d", svc.stats.replied)
	}
}
