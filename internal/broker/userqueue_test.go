package broker

import "testing"

func TestUserQueues(t *testing.T) {
	b := New(Options{})
	v := b.VHost(DefaultVHost)
	o1, o2, o3 := b.NewOwner(), b.NewOwner(), b.NewOwner()
	ann1, err := v.DeclareUserQueue("ann", o1)
	if err != nil {
		t.Fatal(err)
	}
	ann2, _ := v.DeclareUserQueue("ann", o2)
	bob, _ := v.DeclareUserQueue("bob", o3)
	p := v.Publisher()
	// Every queue of ann gets what goes to ann through amq.herald.user.
	if n := publish(t, p, UserExchange, "ann", "hi ann"); n != 2 {
		t.Fatalf("routed to %d queues, want ann's 2", n)
	}
	if ann1.Stats().Ready != 1 || ann2.Stats().Ready != 1 || bob.Stats().Ready != 0 {
		t.Fatal("wrong queues")
	}
	// Not reachable by name through the default exchange, not listed,
	// not exported (nor their bindings).
	if n := publish(t, p, "", ann1.Name(), "x"); n != 0 {
		t.Fatal("a user queue is reachable through the default exchange")
	}
	for _, q := range v.Queues() {
		if q == ann1 {
			t.Fatal("a user queue is listed")
		}
	}
	for _, bd := range b.ExportDefinitions(false).Bindings {
		if bd.Source == UserExchange {
			t.Fatalf("exported %+v", bd)
		}
	}
	// They go with their owner.
	b.ReleaseOwner(o1)
	if n := publish(t, p, UserExchange, "ann", "again"); n != 1 {
		t.Fatalf("routed to %d after ann's first connection left", n)
	}
}
