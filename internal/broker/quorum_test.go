package broker

import (
	"errors"
	"testing"
)

// TestQuorumConfig: a quorum queue's delivery limit is 20 unless an
// argument or a policy sets another, or -1 turns it off; a classic queue
// has none by default.
func TestQuorumConfig(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	v := b.VHost(DefaultVHost)
	limit := func(name string, args Table) int64 {
		t.Helper()
		q, err := v.DeclareQueue(name, QueueOptions{Durable: true, Args: args})
		if err != nil {
			t.Fatal(err)
		}
		c := q.kind.(*classicQueue)
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cfg.deliveryLimit
	}
	quorum := Table{"x-queue-type": "quorum"}
	if n := limit("q1", quorum); n != DefaultQuorumDeliveryLimit {
		t.Fatalf("quorum default limit %d", n)
	}
	if n := limit("q2", Table{"x-queue-type": "quorum", "x-delivery-limit": int64(3)}); n != 3 {
		t.Fatalf("quorum with x-delivery-limit 3: %d", n)
	}
	if n := limit("q3", Table{"x-queue-type": "quorum", "x-delivery-limit": int32(-1)}); n >= 0 {
		t.Fatalf("quorum with x-delivery-limit -1: %d", n)
	}
	if n := limit("c1", nil); n >= 0 {
		t.Fatalf("classic default limit %d", n)
	}
	if _, err := v.DeclareQueue("c2", QueueOptions{Args: Table{"x-delivery-limit": int64(-2)}}); !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("x-delivery-limit -2: %v", err)
	}
	must(t, v.PutPolicy(Policy{Name: "dl", Pattern: "^q1$", Definition: Table{"delivery-limit": int64(7)}}))
	if n := limit("q1", quorum); n != 7 {
		t.Fatalf("quorum under a delivery-limit policy: %d", n)
	}
	must(t, v.PutPolicy(Policy{Name: "dl", Pattern: "^q1$", Definition: Table{"delivery-limit": int64(-1)}}))
	if n := limit("q1", quorum); n >= 0 {
		t.Fatalf("quorum under a delivery-limit -1 policy: %d", n)
	}
}

// TestQuorumRefusals: what RabbitMQ refuses for a quorum queue is a 406
// and declares nothing.
func TestQuorumRefusals(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	v := b.VHost(DefaultVHost)
	quorum := Table{"x-queue-type": "quorum"}
	for _, o := range []QueueOptions{
		{Args: quorum},
		{Durable: true, Exclusive: true, Owner: 1, Args: quorum},
		{Durable: true, AutoDelete: true, Args: quorum},
		{Durable: true, Args: Table{"x-queue-type": "quorum", "x-max-priority": int64(4)}},
		{Durable: true, Args: Table{"x-queue-type": "stream"}},
	} {
		if _, err := v.DeclareQueue("q", o); !errors.Is(err, ErrPreconditionFailed) {
			t.Errorf("%+v: %v, want 406", o, err)
		}
	}
	if _, err := v.Queue("q"); err == nil {
		t.Fatal("a refused declaration left a queue")
	}
}
