package broker

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// fakeSink records deliveries; it refuses when full is set.
type fakeSink struct {
	mu        sync.Mutex
	got       []Delivery
	full      bool
	cancelled int
}

func (s *fakeSink) Deliver(d Delivery) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return false
	}
	s.got = append(s.got, d)
	return true
}

func (s *fakeSink) Cancelled(*Consumer) {
	s.mu.Lock()
	s.cancelled++
	s.mu.Unlock()
}

func (s *fakeSink) deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.got...)
}

func bodies(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Message.Body)
	}
	return out
}

func mustQueue(t *testing.T, v *VHost, name string) *Queue {
	t.Helper()
	q, err := v.DeclareQueue(name, QueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func publish(t *testing.T, p *Publisher, exchange, key string, body string) int {
	t.Helper()
	n, err := p.Publish(&Message{Exchange: exchange, RoutingKey: key, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRoutingByExchangeKind(t *testing.T) {
	b := New(Options{})
	v := b.VHost(DefaultVHost)
	p := v.Publisher()
	for _, n := range []string{"q1", "q2", "q3"} {
		mustQueue(t, v, n)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(v.BindQueue("q1", "amq.direct", "k1", nil, 0))
	must(v.BindQueue("q2", "amq.direct", "k1", nil, 0))
	must(v.BindQueue("q3", "amq.direct", "k3", nil, 0))
	if got := publish(t, p, "amq.direct", "k1", "x"); got != 2 {
		t.Errorf("direct k1 routed to %d queues, want 2", got)
	}
	if got := publish(t, p, "amq.direct", "nope", "x"); got != 0 {
		t.Errorf("direct nope routed to %d, want 0", got)
	}
	must(v.BindQueue("q1", "amq.fanout", "", nil, 0))
	must(v.BindQueue("q3", "amq.fanout", "ignored", nil, 0))
	if got := publish(t, p, "amq.fanout", "whatever", "x"); got != 2 {
		t.Errorf("fanout routed to %d, want 2", got)
	}
	must(v.BindQueue("q1", "amq.topic", "a.*.c", nil, 0))
	must(v.BindQueue("q1", "amq.topic", "a.#", nil, 0)) // same queue twice: one copy
	must(v.BindQueue("q2", "amq.topic", "#.z", nil, 0))
	cases := map[string]int{"a.b.c": 1, "a": 1, "x.y.z": 1, "a.z": 2, "b.c": 0}
	for key, want := range cases {
		if got := publish(t, p, "amq.topic", key, "x"); got != want {
			t.Errorf("topic %q routed to %d, want %d", key, got, want)
		}
	}
	if got := publish(t, p, "", "q3", "x"); got != 1 {
		t.Errorf("default exchange routed to %d, want 1", got)
	}
	if _, err := p.Publish(&Message{Exchange: "missing"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("publish to missing exchange: %v", err)
	}
}

func TestHeadersMatch(t *testing.T) {
	h := Table{"a": int32(1), "b": "x", "x-tag": "t"}
	cases := []struct {
		args Table
		want bool
	}{
		{Table{"a": int64(1), "b": "x"}, true}, // default all; numbers compare by value
		{Table{"x-match": "all", "a": 1, "c": nil}, false},
		{Table{"x-match": "any", "a": 2, "b": "x"}, true},
		{Table{"x-match": "any", "a": 2, "c": "x"}, false},
		{Table{"x-match": "all", "a": nil}, true}, // void: presence only
		{Table{"x-match": "all", "x-tag": "other"}, true},
		{Table{"x-match": "all-with-x", "x-tag": "other"}, false},
		{Table{"x-match": "any-with-x", "x-tag": "t"}, true},
		{Table{"x-match": "all"}, true},
		{Table{"x-match": "any"}, false},
	}
	for i, c := range cases {
		if got := headersMatch(c.args, h); got != c.want {
			t.Errorf("case %d %v: got %v want %v", i, c.args, got, c.want)
		}
	}
}

func TestExchangeToExchangeCycle(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	for _, n := range []string{"e1", "e2"} {
		if _, err := v.DeclareExchange(n, ExchangeOptions{Kind: KindFanout}); err != nil {
			t.Fatal(err)
		}
	}
	mustQueue(t, v, "q")
	if err := v.BindExchange("e2", "e1", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := v.BindExchange("e1", "e2", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("q", "e2", "", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := publish(t, v.Publisher(), "e1", "", "x"); got != 1 {
		t.Fatalf("routed %d, want 1", got)
	}
}

func TestCompetingConsumersRoundRobinAndFIFO(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	q := mustQueue(t, v, "work")
	sinks := []*fakeSink{{}, {}, {}}
	for i, s := range sinks {
		if _, err := q.Consume(ConsumerOptions{Tag: fmt.Sprint(i), NoAck: true, Sink: s}); err != nil {
			t.Fatal(err)
		}
	}
	p := v.Publisher()
	for i := 0; i < 9; i++ {
		publish(t, p, "", "work", fmt.Sprint(i))
	}
	for i, s := range sinks {
		got := bodies(s.deliveries())
		want := []string{fmt.Sprint(i), fmt.Sprint(i + 3), fmt.Sprint(i + 6)}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("consumer %d got %v, want %v", i, got, want)
		}
	}
}

func TestPrefetchAndRequeueOrder(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	q := mustQueue(t, v, "q")
	p := v.Publisher()
	for i := 0; i < 10; i++ {
		publish(t, p, "", "q", fmt.Sprint(i))
	}
	s := &fakeSink{}
	c, err := q.Consume(ConsumerOptions{Tag: "c", Prefetch: 3, Sink: s})
	if err != nil {
		t.Fatal(err)
	}
	ds := s.deliveries()
	if len(ds) != 3 || c.Unacked() != 3 {
		t.Fatalf("prefetch 3: got %d deliveries, %d unacked", len(ds), c.Unacked())
	}
	// Requeue the first two: they come back first, in order, redelivered,
	// after the credit they freed is used.
	q.Requeue(ds[0].ID, ds[1].ID)
	ds = s.deliveries()
	if got := bodies(ds); fmt.Sprint(got) != "[0 1 2 0 1]" {
		t.Fatalf("after requeue got %v", got)
	}
	if !ds[3].Redelivered || !ds[4].Redelivered || ds[2].Redelivered {
		t.Fatal("redelivered flags wrong")
	}
	q.Ack(ds[2].ID, ds[3].ID, ds[4].ID)
	if got := bodies(s.deliveries()); fmt.Sprint(got) != "[0 1 2 0 1 3 4 5]" {
		t.Fatalf("after ack got %v", got)
	}
	if st := q.Stats(); st.Ready != 4 || st.Unacked != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSharedLimiterAcrossQueues(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	qa, qb := mustQueue(t, v, "a"), mustQueue(t, v, "b")
	l := NewLimiter(2)
	sa, sb := &fakeSink{}, &fakeSink{}
	if _, err := qa.Consume(ConsumerOptions{Tag: "a", Limiter: l, Sink: sa}); err != nil {
		t.Fatal(err)
	}
	if _, err := qb.Consume(ConsumerOptions{Tag: "b", Limiter: l, Sink: sb}); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	publish(t, p, "", "a", "a1")
	publish(t, p, "", "a", "a2")
	publish(t, p, "", "b", "b1")
	if len(sa.deliveries()) != 2 || len(sb.deliveries()) != 0 {
		t.Fatalf("limit 2 shared: a=%d b=%d", len(sa.deliveries()), len(sb.deliveries()))
	}
	qa.Ack(sa.deliveries()[0].ID)
	if len(sb.deliveries()) != 1 {
		t.Fatal("ack on queue a did not free credit for queue b")
	}
}

func TestFullSinkResumes(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	q := mustQueue(t, v, "q")
	s := &fakeSink{full: true}
	c, err := q.Consume(ConsumerOptions{Tag: "c", NoAck: true, Sink: s})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, v.Publisher(), "", "q", "m")
	if len(s.deliveries()) != 0 || q.Stats().Ready != 1 {
		t.Fatal("a full sink must leave the message in the queue")
	}
	s.mu.Lock()
	s.full = false
	s.mu.Unlock()
	c.Resume()
	if len(s.deliveries()) != 1 {
		t.Fatal("resume did not deliver")
	}
}

func TestQueueLifecycle(t *testing.T) {
	b := New(Options{})
	v := b.VHost(DefaultVHost)
	owner := b.NewOwner()
	q, err := v.DeclareQueue("mine", QueueOptions{Exclusive: true, Owner: owner})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.UsableQueue(q.Name(), b.NewOwner()); !errors.Is(err, ErrResourceLocked) {
		t.Fatalf("other owner: %v", err)
	}
	if _, err := v.DeclareQueue(q.Name(), QueueOptions{Exclusive: true, Owner: owner, Durable: true}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("inequivalent redeclare: %v", err)
	}
	b.ReleaseOwner(owner)
	if _, err := v.Queue(q.Name()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("exclusive queue survived its owner: %v", err)
	}

	ad, _ := v.DeclareQueue("ad", QueueOptions{AutoDelete: true})
	s := &fakeSink{}
	c, _ := ad.Consume(ConsumerOptions{Tag: "c", Sink: s})
	c.Cancel()
	if _, err := v.Queue("ad"); !errors.Is(err, ErrNotFound) {
		t.Fatal("auto-delete queue survived its last consumer")
	}

	d := mustQueue(t, v, "d")
	s2 := &fakeSink{}
	if _, err := d.Consume(ConsumerOptions{Tag: "c", Sink: s2}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeleteQueue("d", 0, true, false); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("if-unused: %v", err)
	}
	if _, err := v.DeleteQueue("d", 0, false, false); err != nil {
		t.Fatal(err)
	}
	if s2.cancelled != 1 {
		t.Fatal("consumer of a deleted queue was not told")
	}
	if _, err := v.DeclareQueue("amq.x", QueueOptions{}); !errors.Is(err, ErrAccessRefused) {
		t.Fatalf("reserved name: %v", err)
	}
}

func TestAutoDeleteExchange(t *testing.T) {
	v := New(Options{}).VHost(DefaultVHost)
	if _, err := v.DeclareExchange("ad", ExchangeOptions{Kind: KindDirect, AutoDelete: true}); err != nil {
		t.Fatal(err)
	}
	mustQueue(t, v, "q")
	if err := v.BindQueue("q", "ad", "k", nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.UnbindQueue("q", "ad", "k", nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Exchange("ad"); !errors.Is(err, ErrNotFound) {
		t.Fatal("auto-delete exchange survived its last binding")
	}
}
