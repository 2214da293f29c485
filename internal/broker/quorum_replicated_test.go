package broker

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// simLog is a replicated log for tests: every node's proposals go into one
// sequence, and pump applies it on every node in order, as Raft would.
type simLog struct {
	mu      sync.Mutex
	entries []simEntry
	fail    bool // proposals fail (no leader)
}

type simEntry struct {
	op     QuorumOp
	origin string
	boot   uint64
}

type simNode struct {
	log     *simLog
	name    string
	b       *Broker
	applied int
}

func (n *simNode) ProposeQuorum(op QuorumOp, retry bool, done func(error)) {
	n.log.mu.Lock()
	if n.log.fail && !retry {
		n.log.mu.Unlock()
		done(fmt.Errorf("no leader"))
		return
	}
	boot, _ := n.b.QuorumBoot()
	n.log.entries = append(n.log.entries, simEntry{op: op, origin: n.name, boot: boot})
	n.log.mu.Unlock()
	done(nil)
}
func (n *simNode) Congested() bool           { return false }
func (n *simNode) FlowChan() <-chan struct{} { return nil }
func (n *simNode) Replicas() (string, []string, []string) {
	return "n1", []string{"n1", "n2", "n3"}, []string{"n1", "n2", "n3"}
}

// newSimCluster is three brokers in cluster mode sharing one simLog, each
// with the quorum queue "qq" (args added).
func newSimCluster(t *testing.T, args Table) (*simLog, []*simNode) {
	t.Helper()
	l := &simLog{}
	var nodes []*simNode
	for i := range 3 {
		b := New(Options{})
		t.Cleanup(func() { b.Close() })
		n := &simNode{log: l, name: fmt.Sprintf("n%d", i+1), b: b}
		b.EnableReplicatedQuorum(n.name, uint64(100+i))
		b.SetQuorumLog(n)
		a := Table{"x-queue-type": "quorum"}
		for k, v := range args {
			a[k] = v
		}
		if _, err := b.VHost(DefaultVHost).DeclareQueue("qq", QueueOptions{Durable: true, Args: a}); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	return l, nodes
}

// pump applies the log on every node until nothing new is proposed.
func pump(l *simLog, nodes []*simNode) {
	for {
		progress := false
		for _, n := range nodes {
			for {
				l.mu.Lock()
				if n.applied >= len(l.entries) {
					l.mu.Unlock()
					break
				}
				e := l.entries[n.applied]
				n.applied++
				l.mu.Unlock()
				n.b.ApplyQuorum(e.op, e.origin, e.boot)
				progress = true
			}
		}
		if !progress {
			return
		}
	}
}

func simQueue(t *testing.T, n *simNode) *Queue {
	t.Helper()
	q, err := n.b.VHost(DefaultVHost).Queue("qq")
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func dumpJSON(t *testing.T, n *simNode) string {
	t.Helper()
	b, err := json.Marshal(n.b.SnapshotQuorum())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameState(t *testing.T, nodes []*simNode) {
	t.Helper()
	want := dumpJSON(t, nodes[0])
	for _, n := range nodes[1:] {
		if got := dumpJSON(t, n); got != want {
			t.Fatalf("%s's state differs from n1's:\n%s\n%s", n.name, got, want)
		}
	}
}

// TestReplicatedQuorumAssignment: consumers on two nodes share the
// messages round-robin within their credit; every node computes the same
// state, and each delivers only to its own consumers, in order.
func TestReplicatedQuorumAssignment(t *testing.T) {
	l, nodes := newSimCluster(t, nil)
	s1, s2 := &fakeSink{}, &fakeSink{}
	if _, err := simQueue(t, nodes[0]).Consume(ConsumerOptions{Tag: "a", Prefetch: 3, Sink: s1}); err != nil {
		t.Fatal(err)
	}
	if _, err := simQueue(t, nodes[1]).Consume(ConsumerOptions{Tag: "b", Prefetch: 3, Sink: s2}); err != nil {
		t.Fatal(err)
	}
	p := nodes[2].b.VHost(DefaultVHost).Publisher()
	for i := range 10 {
		if n, err := p.Publish(&Message{RoutingKey: "qq", Body: fmt.Appendf(nil, "m%d", i)}); err != nil || n != 1 {
			t.Fatalf("publish: %d %v", n, err)
		}
	}
	pump(l, nodes)
	sameState(t, nodes)
	if got := bodies(s1.deliveries()); !slices.Equal(got, []string{"m0", "m2", "m4"}) {
		t.Fatalf("consumer a got %v", got)
	}
	if got := bodies(s2.deliveries()); !slices.Equal(got, []string{"m1", "m3", "m5"}) {
		t.Fatalf("consumer b got %v", got)
	}
	st := simQueue(t, nodes[2]).Stats()
	if st.Ready != 4 || st.Unacked != 6 || st.Consumers != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Acks free credit: the next messages follow.
	var ids []uint64
	for _, d := range s1.deliveries() {
		ids = append(ids, d.ID)
	}
	simQueue(t, nodes[0]).Ack(ids...)
	pump(l, nodes)
	sameState(t, nodes)
	if got := bodies(s1.deliveries()); !slices.Equal(got, []string{"m0", "m2", "m4", "m6", "m7", "m8"}) {
		t.Fatalf("consumer a after acks got %v", got)
	}
	if st := simQueue(t, nodes[1]).Stats(); st.Ready != 1 || st.Unacked != 6 || st.Acks != 3 {
		t.Fatalf("stats after acks %+v", st)
	}
}

// TestReplicatedQuorumNodeGone: a node declared gone loses its consumers
// and its deliveries come back, redelivered, to the others; a requeue does
// the same; the node, alive after all, attaches its consumers again.
func TestReplicatedQuorumNodeGone(t *testing.T) {
	l, nodes := newSimCluster(t, nil)
	s1, s2 := &fakeSink{}, &fakeSink{}
	if _, err := simQueue(t, nodes[0]).Consume(ConsumerOptions{Tag: "a", Prefetch: 2, Sink: s1}); err != nil {
		t.Fatal(err)
	}
	pump(l, nodes)
	p := nodes[0].b.VHost(DefaultVHost).Publisher()
	for i := range 4 {
		_, _ = p.Publish(&Message{RoutingKey: "qq", Body: fmt.Appendf(nil, "m%d", i)})
	}
	pump(l, nodes)
	cb, err := simQueue(t, nodes[1]).Consume(ConsumerOptions{Tag: "b", Prefetch: 10, Sink: s2})
	if err != nil {
		t.Fatal(err)
	}
	pump(l, nodes)
	if got := bodies(s2.deliveries()); !slices.Equal(got, []string{"m2", "m3"}) {
		t.Fatalf("consumer b got %v", got)
	}
	// n1 is taken for dead by the leader.
	nodes[2].ProposeQuorum(QuorumNodeGone("n1", 0), true, func(error) {})
	pump(l, nodes)
	sameState(t, nodes)
	d := s2.deliveries()
	if got := bodies(d); !slices.Equal(got, []string{"m2", "m3", "m0", "m1"}) || !d[2].Redelivered || !d[3].Redelivered || d[2].DeliveryCount != 1 {
		t.Fatalf("consumer b after n1 went got %v (%+v)", got, d)
	}
	// n1's consumer attached again: it gets what b, cancelled, gives back.
	var ids []uint64
	for _, x := range d {
		ids = append(ids, x.ID)
	}
	cb.Cancel()
	simQueue(t, nodes[1]).Requeue(ids[:2]...)
	pump(l, nodes)
	sameState(t, nodes)
	d1 := s1.deliveries()
	if got := bodies(d1); !slices.Equal(got, []string{"m0", "m1", "m2", "m3"}) || !d1[2].Redelivered {
		t.Fatalf("consumer a after the requeue got %v", got)
	}
	// Acks of n1's deliveries from before it was taken for dead do nothing.
	simQueue(t, nodes[0]).Ack(d1[0].ID, d1[1].ID)
	pump(l, nodes)
	if st := simQueue(t, nodes[0]).Stats(); st.Unacked != 4 || st.Acks != 0 {
		t.Fatalf("stale acks counted: %+v", st)
	}
}

// TestReplicatedQuorumDeliveryLimit: past x-delivery-limit a message is
// dead-lettered, once (by the node that proposed the settlement).
func TestReplicatedQuorumDeliveryLimit(t *testing.T) {
	l, nodes := newSimCluster(t, Table{"x-delivery-limit": int64(1), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
	for _, n := range nodes {
		if _, err := n.b.VHost(DefaultVHost).DeclareQueue("dlq", QueueOptions{Durable: true}); err != nil {
			t.Fatal(err)
		}
	}
	s := &fakeSink{}
	if _, err := simQueue(t, nodes[0]).Consume(ConsumerOptions{Tag: "a", Prefetch: 1, Sink: s}); err != nil {
		t.Fatal(err)
	}
	_, _ = nodes[1].b.VHost(DefaultVHost).Publisher().Publish(&Message{RoutingKey: "qq", Body: []byte("x")})
	pump(l, nodes)
	for i := range 2 {
		d := s.deliveries()
		if len(d) != i+1 {
			t.Fatalf("round %d: %d deliveries", i, len(d))
		}
		simQueue(t, nodes[0]).Requeue(d[i].ID)
		pump(l, nodes)
	}
	sameState(t, nodes)
	if st := simQueue(t, nodes[0]).Stats(); st.Ready != 0 || st.Unacked != 0 {
		t.Fatalf("the message is still in the queue: %+v", st)
	}
	for i, n := range nodes {
		dlq, _ := n.b.VHost(DefaultVHost).Queue("dlq")
		want := 0
		if i == 0 {
			want = 1 // n1 proposed the requeue that passed the limit
		}
		if got := dlq.Stats().Ready; got != want {
			t.Fatalf("%s's dlq holds %d, want %d", n.name, got, want)
		}
	}
}

// TestReplicatedQuorumSnapshot: a snapshot restored on a fresh node gives
// it the same state, and it applies what follows the same way.
func TestReplicatedQuorumSnapshot(t *testing.T) {
	l, nodes := newSimCluster(t, nil)
	s := &fakeSink{}
	if _, err := simQueue(t, nodes[0]).Consume(ConsumerOptions{Tag: "a", Prefetch: 2, Sink: s}); err != nil {
		t.Fatal(err)
	}
	p := nodes[0].b.VHost(DefaultVHost).Publisher()
	for i := range 5 {
		_, _ = p.Publish(&Message{RoutingKey: "qq", Body: fmt.Appendf(nil, "m%d", i), Properties: Properties{MessageID: fmt.Sprint(i)}})
	}
	pump(l, nodes)
	raw, err := json.Marshal(nodes[1].b.SnapshotQuorum())
	if err != nil {
		t.Fatal(err)
	}
	var snap QuorumSnapshot
	if err := json.Unmarshal(raw, &snap); err != nil {
		t.Fatal(err)
	}
	// n3 starts over from the snapshot.
	fresh := New(Options{})
	defer fresh.Close()
	fresh.EnableReplicatedQuorum("n3", 777)
	fresh.SetQuorumLog(nodes[2])
	if _, err := fresh.VHost(DefaultVHost).DeclareQueue("qq", QueueOptions{Durable: true, Args: Table{"x-queue-type": "quorum"}}); err != nil {
		t.Fatal(err)
	}
	fresh.RestoreQuorum(snap)
	nodes[2] = &simNode{log: l, name: "n3", b: fresh, applied: len(l.entries)}
	sameState(t, nodes)
	d := s.deliveries()
	simQueue(t, nodes[0]).Ack(d[0].ID)
	pump(l, nodes)
	sameState(t, nodes)
	if got := bodies(s.deliveries()); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Fatalf("after the ack: %v", got)
	}
	q, _ := fresh.VHost(DefaultVHost).Queue("qq")
	if st := q.Stats(); st.Ready != 2 || st.Unacked != 2 || st.Published != 5 {
		t.Fatalf("restored stats %+v", st)
	}
}

// TestReplicatedQuorumConfirm: a publisher's wait ends with the
// proposal's outcome: a failed one is an error (a nack).
func TestReplicatedQuorumConfirm(t *testing.T) {
	l, nodes := newSimCluster(t, nil)
	p := nodes[0].b.VHost(DefaultVHost).Publisher()
	for _, fail := range []bool{false, true} {
		l.mu.Lock()
		l.fail = fail
		l.mu.Unlock()
		if _, err := p.Publish(&Message{RoutingKey: "qq", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if !p.Stored() {
			t.Fatal("a replicated publish needs a wait")
		}
		var got error
		called := false
		if !p.WaitDurable(func(err error) { got, called = err, true }) || !called {
			t.Fatal("the wait did not complete")
		}
		if (got != nil) != fail {
			t.Fatalf("fail=%v: wait ended with %v", fail, got)
		}
	}
	pump(l, nodes)
	if st := simQueue(t, nodes[1]).Stats(); st.Ready != 1 {
		t.Fatalf("ready %d, want the one message that was committed", st.Ready)
	}
}

// FuzzReadQuorumOp: the binary op form parses what it wrote and refuses
// the rest without panicking.
func FuzzReadQuorumOp(f *testing.F) {
	f.Add(AppendQuorumOp(nil, QuorumOp{Op: qopEnqueue, VHost: "/", Queue: "q", Meta: encodeMeta(&Message{RoutingKey: "q"}), Body: []byte("x")}))
	f.Add(AppendQuorumOp(nil, QuorumOp{Op: qopSettle, VHost: "/", Queue: "q", IDs: []uint64{1, 1 << 40}, How: int(settleRequeue)}))
	f.Add(AppendQuorumOp(nil, QuorumOp{Op: qopAttach, Node: "n1", Boot: 9, Consumer: 3, Prefetch: 10}))
	f.Add(AppendQuorumOp(nil, QuorumOp{Op: qopGet, VHost: "/", Queue: "q", Node: "n2", Boot: 7, Consumer: 12, How: 1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		op, _, err := ReadQuorumOp(b)
		if err != nil {
			return
		}
		again := AppendQuorumOp(nil, op)
		op2, rest2, err := ReadQuorumOp(again)
		if err != nil || len(rest2) != 0 {
			t.Fatalf("%+v does not read back: %v", op, err)
		}
		a, _ := json.Marshal(op)
		c, _ := json.Marshal(op2)
		if string(a) != string(c) {
			t.Fatalf("%s != %s", a, c)
		}
	})
}

// TestReplicatedQuorumNoConfirmPublisher: a publisher that never waits
// keeps a bounded number of futures, and a later wait still covers every
// message since the last one.
func TestReplicatedQuorumNoConfirmPublisher(t *testing.T) {
	l, nodes := newSimCluster(t, nil)
	p := nodes[0].b.VHost(DefaultVHost).Publisher()
	for range 1000 {
		if _, err := p.Publish(&Message{RoutingKey: "qq", Body: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.quorumWaits) > maxQuorumWaits {
		t.Fatalf("%d futures kept", len(p.quorumWaits))
	}
	l.mu.Lock()
	l.fail = true
	l.mu.Unlock()
	_, _ = p.Publish(&Message{RoutingKey: "qq", Body: []byte("y")})
	var got error
	if !p.WaitPublished(func(err error) { got = err }) || got == nil {
		t.Fatalf("the wait over every message since the last one did not report the failed one: %v", got)
	}
	pump(l, nodes)
	if st := simQueue(t, nodes[1]).Stats(); st.Ready != 1000 {
		t.Fatalf("ready %d", st.Ready)
	}
}
