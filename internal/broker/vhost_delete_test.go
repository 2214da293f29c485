package broker

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// cancelSink accepts every delivery and remembers a cancellation.
type cancelSink struct{ cancelled atomic.Bool }

func (s *cancelSink) Deliver(Delivery) bool { return true }
func (s *cancelSink) Cancelled(*Consumer)   { s.cancelled.Store(true) }

func TestDeleteVHost(t *testing.T) {
	var changes atomic.Int32
	b := New(Options{OnDefinitionsChange: func() { changes.Add(1) }})
	defer b.Close()
	v := b.AddVHost("dev")
	_, err := v.DeclareQueue("q", QueueOptions{Durable: true})
	must(t, err)
	_, err = v.DeclareExchange("ex", ExchangeOptions{Kind: KindTopic, Durable: true})
	must(t, err)
	must(t, v.BindQueue("q", "ex", "a.#", nil, 0))
	must(t, v.PutPolicy(Policy{Name: "p", Pattern: "^q", Definition: Table{"max-length": int64(5)}}))
	must(t, b.SetVHostLimit("dev", LimitMaxQueues, 10))
	must(t, b.SetVHostLimit("/", LimitMaxQueues, 10))
	q, _ := v.Queue("q")
	sink := &cancelSink{}
	if _, err := q.Consume(ConsumerOptions{Tag: "c", Sink: sink}); err != nil {
		t.Fatal(err)
	}
	_, err = v.Publisher().Publish(&Message{Exchange: "ex", RoutingKey: "a.b", Body: []byte("m")})
	must(t, err)

	var closedWith []string
	_, unregDev := b.RegisterConnection(ConnectionInfo{Protocol: "P", VHost: "dev", Close: func(r string) { closedWith = append(closedWith, r) }})
	defer unregDev()
	_, unregRoot := b.RegisterConnection(ConnectionInfo{Protocol: "P", VHost: "/", Close: func(r string) { closedWith = append(closedWith, "root: "+r) }})
	defer unregRoot()

	before := changes.Load()
	n, err := b.DeleteVHost("dev")
	must(t, err)
	if n != 1 {
		t.Fatalf("deleted %d queues, want 1", n)
	}
	if changes.Load() == before {
		t.Fatal("no definitions change reported")
	}
	if len(closedWith) != 1 || closedWith[0] != "vhost 'dev' is deleted" {
		t.Fatalf("connections closed with %q", closedWith)
	}
	if !sink.cancelled.Load() {
		t.Fatal("the consumer was not cancelled")
	}
	if b.VHost("dev") != nil {
		t.Fatal("vhost still found")
	}
	for _, x := range b.VHosts() {
		if x.Name() == "dev" {
			t.Fatal("vhost still listed")
		}
	}
	d := b.ExportDefinitions(true)
	for _, vd := range d.VHosts {
		if vd.Name == "dev" {
			t.Fatal("vhost exported")
		}
	}
	if len(d.Queues) != 0 || len(d.Exchanges) != 0 || len(d.Bindings) != 0 || len(d.Policies) != 0 {
		t.Fatalf("definitions left: %+v", d)
	}
	if l := b.VHostLimits(); len(l) != 1 || l[0].Name != "/" {
		t.Fatalf("limits left: %+v", l)
	}
	// A connection that held the vhost before it went: declarations fail.
	if _, err := v.DeclareQueue("late", QueueOptions{Durable: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("declare on a deleted vhost: %v", err)
	}
	if _, err := v.DeclareExchange("late", ExchangeOptions{Kind: KindDirect}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("exchange declare on a deleted vhost: %v", err)
	}
	if _, err := v.Publisher().Publish(&Message{Exchange: "ex", RoutingKey: "a.b"}); err == nil {
		t.Fatal("publish to a deleted vhost's exchange succeeded")
	}
	// A connection that logged in before the deletion but registers after.
	closedWith = nil
	_, unregLate := b.RegisterConnection(ConnectionInfo{Protocol: "P", VHost: "dev", Close: func(r string) { closedWith = append(closedWith, r) }})
	defer unregLate()
	if len(closedWith) != 1 {
		t.Fatalf("late registration closed with %q", closedWith)
	}
	if _, err := b.DeleteVHost("dev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// The vhost can be created again, empty.
	v2 := b.AddVHost("dev")
	if len(v2.Queues()) != 0 || len(v2.Policies()) != 0 {
		t.Fatal("recreated vhost is not empty")
	}
	// And the default vhost may go too.
	if _, err := b.DeleteVHost(DefaultVHost); err != nil {
		t.Fatal(err)
	}
	if b.VHost(DefaultVHost) != nil {
		t.Fatal("default vhost still there")
	}
}

func TestProtocolCounterDetached(t *testing.T) {
	b := New(Options{})
	c := b.ProtocolCounter("HTTP")
	if b.ProtocolCounter("HTTP") != c {
		t.Fatal("a second counter for the same protocol")
	}
	c.CountPublish()
	c.CountDeliver(2)
	c.CountAck(1)
	counts, _ := b.ProtocolCounters()
	if counts["HTTP"] != (MessageCounts{1, 2, 1}) {
		t.Fatalf("counts %+v", counts)
	}
	if len(b.Connections()) != 0 {
		t.Fatal("a detached counter is listed as a connection")
	}
}

func TestPublishLimiterTake(t *testing.T) {
	var none *PublishLimiter
	if ok, _ := none.Take(); !ok || !none.Idle() {
		t.Fatal("nil limiter refuses")
	}
	l := NewPublishLimiter(10)
	for i := range 10 {
		if ok, _ := l.Take(); !ok {
			t.Fatalf("token %d of the burst refused", i)
		}
	}
	ok, wait := l.Take()
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%v", ok, wait)
	}
	if l.Idle() {
		t.Fatal("an empty bucket is idle")
	}
	l.last = time.Now().Add(-2 * time.Second) // two seconds of refill
	if !l.Idle() {
		t.Fatal("a refilled bucket is not idle")
	}
}
