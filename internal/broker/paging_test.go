package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

func openPagingBroker(t *testing.T, fs *store.MemFS, budget int) (*Broker, *store.Log) {
	t.Helper()
	log, _, err := store.Open("/data/log", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return New(Options{Store: log, MemoryMessages: budget}), log
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPagingKeepsBudgetAndOrder: a durable queue keeps at most its budget
// of stored messages in RAM; the rest come back from the log in order,
// through consumers, basic.get, peek and dead-lettering.
func TestPagingKeepsBudgetAndOrder(t *testing.T) {
	fs := store.NewMemFS()
	b, log := openPagingBroker(t, fs, 10)
	defer log.Close()
	defer b.Close()
	v := b.VHost(DefaultVHost)
	q, err := v.DeclareQueue("deep", QueueOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	const n = 500
	for i := range n {
		m := &Message{RoutingKey: "deep", Body: []byte(fmt.Sprint(i)), Properties: Properties{DeliveryMode: 2, Headers: Table{"i": int64(i)}}}
		if _, err := p.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	q.kind.(*classicQueue).mu.Lock()
	inMem, live := q.kind.(*classicQueue).ready.inMemory, q.kind.(*classicQueue).ready.live
	q.kind.(*classicQueue).mu.Unlock()
	if live != n || inMem > 10 {
		t.Fatalf("after %d publishes: %d ready, %d in RAM (budget 10)", n, live, inMem)
	}
	if pk := q.Peek(20); len(pk) != 20 || string(pk[15].Message.Body) != "15" || pk[15].Message.Properties.Headers["i"] != int64(15) {
		t.Fatalf("peek across the paged boundary: %d, %q", len(pk), pk[15].Message.Body)
	}
	// basic.get reads a paged head back synchronously.
	for i := range 15 {
		d, ok, err := q.Get(0, true)
		if err != nil || !ok || string(d.Message.Body) != fmt.Sprint(i) {
			t.Fatalf("get %d: %v %v %q", i, ok, err, d.Message.Body)
		}
	}
	// A consumer gets the rest in order; the page-in worker refills ahead.
	s := &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Tag: "c", NoAck: true, Sink: s}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(s.deliveries()) != n-15 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := len(s.deliveries()); got != n-15 {
		q.kind.(*classicQueue).mu.Lock()
		t.Fatalf("got %d of %d; ready %d in RAM %d pagingIn %v", got, n-15, q.kind.(*classicQueue).ready.live, q.kind.(*classicQueue).ready.inMemory, q.kind.(*classicQueue).pagingIn)
	}
	for i, d := range s.deliveries() {
		if want := fmt.Sprint(i + 15); string(d.Message.Body) != want || d.Message.Properties.Headers["i"] != int64(i+15) {
			t.Fatalf("delivery %d: %q %v, want %s", i, d.Message.Body, d.Message.Properties.Headers, want)
		}
	}
}

// TestPagedMessagesRecoverAndDeadLetter: after a restart the recovered
// queue is paged too, and a paged message that expires is dead-lettered
// with its body.
func TestPagedMessagesRecoverAndDeadLetter(t *testing.T) {
	fs := store.NewMemFS()
	b, log := openPagingBroker(t, fs, 5)
	v := b.VHost(DefaultVHost)
	if _, err := v.DeclareQueue("dlq", QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareQueue("deep", QueueOptions{Durable: true, Args: Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}}); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	for i := range 50 {
		if _, err := p.Publish(&Message{RoutingKey: "deep", Body: []byte(fmt.Sprint(i)), Properties: Properties{DeliveryMode: 2, Expiration: "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}

	b2, log2 := openPagingBroker(t, fs, 5)
	defer log2.Close()
	defer b2.Close()
	v2 := b2.VHost(DefaultVHost)
	for _, name := range []string{"dlq", "deep"} {
		if _, err := v2.DeclareQueue(name, QueueOptions{Durable: true, Args: map[string]Table{"deep": {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}}[name]}); err != nil {
			t.Fatal(err)
		}
	}
	if _, msgs, err := b2.RecoverMessages(false); err != nil || msgs != 50 {
		t.Fatalf("recovered %d, %v", msgs, err)
	}
	q, _ := v2.Queue("deep")
	q.kind.(*classicQueue).mu.Lock()
	inMem := q.kind.(*classicQueue).ready.inMemory
	q.kind.(*classicQueue).mu.Unlock()
	if inMem > 5 {
		t.Fatalf("recovery kept %d messages in RAM, budget 5", inMem)
	}
	if got := q.Stats().ReadyBytes; got != 90 { // bodies "0".."49"
		t.Fatalf("recovered ready bytes %d, want 90 (paged messages count their bodies too)", got)
	}
	// Every message expires 1 ms after recovery: paged ones are read back
	// to be dead-lettered.
	time.Sleep(5 * time.Millisecond) // let the 1 ms TTLs pass
	if _, ok, _ := q.Get(0, true); ok {
		t.Fatal("an expired message was delivered")
	}
	dlq, _ := v2.Queue("dlq")
	var got []string
	waitFor(t, "the dead letters", func() bool { return dlq.Stats().Ready == 50 })
	for {
		d, ok, err := dlq.Get(0, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(d.Message.Body))
	}
	if len(got) != 50 || got[0] != "0" || got[49] != "49" {
		t.Fatalf("dead letters %v", got)
	}
}

// TestTransientOverflowPagesAndIsDropped: transient messages beyond the
// budget are written to the log instead of RAM, come back in order, and
// are not recovered after a restart.
func TestTransientOverflowPagesAndIsDropped(t *testing.T) {
	fs := store.NewMemFS()
	b, log := openPagingBroker(t, fs, 10)
	v := b.VHost(DefaultVHost)
	q, err := v.DeclareQueue("flood", QueueOptions{Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	for i := range 300 {
		if _, err := p.Publish(&Message{RoutingKey: "flood", Body: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	q.kind.(*classicQueue).mu.Lock()
	inMem, live := q.kind.(*classicQueue).ready.inMemory, q.kind.(*classicQueue).ready.live
	q.kind.(*classicQueue).mu.Unlock()
	if live != 300 || inMem > 10 {
		t.Fatalf("transient overflow: %d ready, %d in RAM (budget 10)", live, inMem)
	}
	for i := range 150 {
		d, ok, err := q.Get(0, true)
		if err != nil || !ok || string(d.Message.Body) != fmt.Sprint(i) {
			t.Fatalf("get %d: %v %v", i, ok, err)
		}
	}
	b.Close()
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	b2, log2 := openPagingBroker(t, fs, 10)
	defer log2.Close()
	defer b2.Close()
	if _, err := b2.VHost(DefaultVHost).DeclareQueue("flood", QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	if _, msgs, err := b2.RecoverMessages(false); err != nil || msgs != 0 {
		t.Fatalf("recovered %d transient messages (%v); they must not survive", msgs, err)
	}
}
