package broker

import (
	"reflect"
	"testing"
)

// recorder is a Replicator that applies every command to its own broker
// (a second node) and then to the origin, as a one-entry log would.
type recorder struct {
	origin, other *Broker
	log           []Command
}

func (r *recorder) Replicate(c Command) (Result, error) {
	r.log = append(r.log, c)
	if _, err := r.other.Apply(c); err != nil {
		return Result{}, err
	}
	return r.origin.Apply(c)
}

func TestReplicatorCarriesDefinitionsChanges(t *testing.T) {
	a, b := New(Options{}), New(Options{})
	rec := &recorder{origin: a, other: b}
	a.SetReplicator(rec)
	v := a.AddVHost("prod")
	if v == nil || b.VHost("prod") == nil {
		t.Fatal("the vhost is not on both nodes")
	}
	owner := a.NewOwner()
	q, err := v.DeclareQueue("orders", QueueOptions{Durable: true, Owner: owner})
	if err != nil || q == nil || q.Name() != "orders" {
		t.Fatalf("declare: %v %v", q, err)
	}
	if _, err := v.DeclareExchange("events", ExchangeOptions{Kind: KindTopic, Durable: true}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("orders", "events", "a.#", nil, owner); err != nil {
		t.Fatal(err)
	}
	if err := v.PutPolicy(Policy{Name: "cap", Pattern: "^orders$", Definition: Table{"max-length": int64(5)}}); err != nil {
		t.Fatal(err)
	}
	// Exclusive queues and what concerns them stay on their node.
	if _, err := v.DeclareQueue("mine", QueueOptions{Exclusive: true, Owner: owner}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("mine", "events", "b.#", nil, owner); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareQueue("transient-sub", QueueOptions{AutoDelete: true}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("transient-sub", "events", "c.#", nil, owner); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"mine", "transient-sub"} {
		if _, err := b.VHost("prod").Queue(n); err == nil {
			t.Fatalf("queue %s (exclusive or auto-delete) was replicated", n)
		}
	}
	if !reflect.DeepEqual(a.ExportDefinitions(true), b.ExportDefinitions(true)) {
		t.Fatalf("the nodes differ:\n%+v\n%+v", a.ExportDefinitions(true), b.ExportDefinitions(true))
	}
	for _, c := range rec.log {
		switch c := c.(type) {
		case DeclareQueue:
			if c.Owner != 0 {
				t.Fatalf("a replicated command carries a node-local owner: %+v", c)
			}
		case Bind:
			if c.Owner != 0 || c.Destination == "mine" || c.Destination == "transient-sub" {
				t.Fatalf("replicated: %+v", c)
			}
		}
	}
	if _, err := v.DeleteQueue("orders", owner, false, false); err != nil {
		t.Fatal(err)
	}
	if _, err := b.VHost("prod").Queue("orders"); err == nil {
		t.Fatal("the delete was not replicated")
	}
	a.SetReplicator(nil)
	n := len(rec.log)
	a.AddVHost("local")
	if len(rec.log) != n || b.VHost("local") != nil {
		t.Fatal("a change after SetReplicator(nil) was replicated")
	}
}

// Definitions.Commands recreate a topology on an empty broker.
func TestDefinitionsCommands(t *testing.T) {
	a := New(Options{})
	v := a.AddVHost("x")
	if _, err := v.DeclareQueue("q", QueueOptions{Durable: true, Args: Table{"x-max-length": int64(3)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareExchange("e", ExchangeOptions{Kind: KindFanout, Durable: true}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("q", "e", "", nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.BindExchange("amq.direct", "e", "k", nil); err != nil {
		t.Fatal(err)
	}
	if err := v.PutPolicy(Policy{Name: "p", Pattern: ".*", Definition: Table{"max-length": int64(9)}}); err != nil {
		t.Fatal(err)
	}
	b := New(Options{})
	for _, c := range a.ExportDefinitions(true).Commands() {
		if _, err := b.Apply(c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
	if !reflect.DeepEqual(a.ExportDefinitions(true), b.ExportDefinitions(true)) {
		t.Fatalf("differ:\n%+v\n%+v", a.ExportDefinitions(true), b.ExportDefinitions(true))
	}
}
