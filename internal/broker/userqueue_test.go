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

// A listener's queue is made by the first message routed to its user,
// which it receives; then the listener is done.
func TestUserListenerOpensOnFirstMessage(t *testing.T) {
	b := New(Options{})
	v := b.VHost(DefaultVHost)
	o1, o2 := b.NewOwner(), b.NewOwner()
	var q1 *Queue
	opens := 0
	l1 := v.ListenUser("ann", func() {
		opens++
		q, err := v.DeclareUserQueue("ann", o1)
		if err != nil {
			t.Error(err)
		}
		q1 = q
	})
	l2 := v.ListenUser("bob", func() { t.Error("bob's listener opened by a message to ann") })
	p := v.Publisher()
	if n := publish(t, p, UserExchange, "ann", "first"); n != 1 || q1 == nil || q1.Stats().Ready != 1 {
		t.Fatalf("first message routed to %d queues (queue %v), want ann's new one holding it", n, q1)
	}
	if n := publish(t, p, UserExchange, "ann", "second"); n != 1 || opens != 1 || q1.Stats().Ready != 2 {
		t.Fatalf("second message: routed %d, opened %d times", n, opens)
	}
	if !l1.Cancel() {
		t.Fatal("Cancel says ann's listener never opened")
	}
	// A cancelled listener never opens.
	if l2.Cancel() {
		t.Fatal("Cancel says bob's listener opened")
	}
	if n := publish(t, p, UserExchange, "bob", "x"); n != 0 {
		t.Fatalf("routed to %d for bob after Cancel", n)
	}
	// Through an exchange-to-exchange binding, too.
	var q2 *Queue
	v.ListenUser("cy", func() { q2, _ = v.DeclareUserQueue("cy", o2) })
	if err := v.BindExchange(UserExchange, "amq.direct", "cy", nil); err != nil {
		t.Fatal(err)
	}
	if n := publish(t, p, "amq.direct", "cy", "via"); n != 1 || q2 == nil || q2.Stats().Ready != 1 {
		t.Fatalf("routed %d through amq.direct", n)
	}
	if len(v.listeners.by) != 0 {
		t.Fatalf("listeners left: %v", v.listeners.by)
	}
}

// Publishers racing to a user each see the queue their message must reach.
func TestUserListenerConcurrentPublishers(t *testing.T) {
	b := New(Options{})
	v := b.VHost(DefaultVHost)
	o := b.NewOwner()
	var q *Queue
	v.ListenUser("ann", func() { q, _ = v.DeclareUserQueue("ann", o) })
	const n = 8
	done := make(chan int)
	for range n {
		go func() {
			routed, err := v.Publisher().Publish(&Message{Exchange: UserExchange, RoutingKey: "ann", Body: []byte("x")})
			if err != nil {
				t.Error(err)
			}
			done <- routed
		}()
	}
	for range n {
		if r := <-done; r != 1 {
			t.Fatalf("a message routed to %d queues, want 1", r)
		}
	}
	if got := q.Stats().Ready; got != n {
		t.Fatalf("queue holds %d, want %d", got, n)
	}
}
