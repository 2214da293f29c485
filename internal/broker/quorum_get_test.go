package broker

import (
	"fmt"
	"testing"
	"time"
)

// simGet does a basic.get on node n, applying the log until it answers.
func simGet(t *testing.T, l *simLog, nodes []*simNode, n *simNode, noAck bool) (Delivery, bool) {
	t.Helper()
	q := simQueue(t, n)
	type res struct {
		d   Delivery
		ok  bool
		err error
	}
	ch := make(chan res, 1)
	go func() {
		d, ok, err := q.Get(0, noAck)
		ch <- res{d, ok, err}
	}()
	for {
		pump(l, nodes)
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("get on %s: %v", n.name, r.err)
			}
			pump(l, nodes)
			return r.d, r.ok
		case <-time.After(time.Millisecond): // the get's op is not proposed yet
		}
	}
}

func wantStats(t *testing.T, n *simNode, ready, unacked int, acks uint64) {
	t.Helper()
	if st := simQueue(t, n).Stats(); st.Ready != ready || st.Unacked != unacked || st.Acks != acks {
		t.Fatalf("%s: stats %+v, want ready %d unacked %d acks %d", n.name, st, ready, unacked, acks)
	}
}

// TestReplicatedQuorumGet: a get takes the head message on any node, with
// the count of those left; it is acked, settled at once with no-ack,
// requeued (redelivered), returned when its node is gone or when nobody
// waits for it; an empty queue answers empty. Every node keeps the same
// state.
func TestReplicatedQuorumGet(t *testing.T) {
	l, nodes := newSimCluster(t, nil)
	p := nodes[2].b.VHost(DefaultVHost).Publisher()
	for i := range 3 {
		if n, err := p.Publish(&Message{RoutingKey: "qq", Body: fmt.Appendf(nil, "m%d", i)}); err != nil || n != 1 {
			t.Fatalf("publish: %d %v", n, err)
		}
	}
	pump(l, nodes)

	d, ok := simGet(t, l, nodes, nodes[1], false)
	if !ok || string(d.Message.Body) != "m0" || d.Remaining != 2 || d.Redelivered || d.DeliveryCount != 0 {
		t.Fatalf("get: %v %+v", ok, d)
	}
	sameState(t, nodes)
	wantStats(t, nodes[0], 2, 1, 0)
	simQueue(t, nodes[1]).Ack(d.ID)
	pump(l, nodes)
	wantStats(t, nodes[2], 2, 0, 1)

	d, ok = simGet(t, l, nodes, nodes[0], true)
	if !ok || string(d.Message.Body) != "m1" || d.Remaining != 1 {
		t.Fatalf("no-ack get: %v %+v", ok, d)
	}
	sameState(t, nodes)
	wantStats(t, nodes[1], 1, 0, 2)

	d, ok = simGet(t, l, nodes, nodes[2], false)
	if !ok || string(d.Message.Body) != "m2" || d.Remaining != 0 {
		t.Fatalf("get: %v %+v", ok, d)
	}
	if _, ok := simGet(t, l, nodes, nodes[1], false); ok {
		t.Fatal("a get on a queue whose only message is out answered a message")
	}
	simQueue(t, nodes[2]).Requeue(d.ID)
	pump(l, nodes)
	wantStats(t, nodes[0], 1, 0, 2)

	// n1 takes it, and is then taken for dead: it comes back.
	d, ok = simGet(t, l, nodes, nodes[0], false)
	if !ok || string(d.Message.Body) != "m2" || !d.Redelivered || d.DeliveryCount != 1 {
		t.Fatalf("get after requeue: %v %+v", ok, d)
	}
	nodes[2].ProposeQuorum(QuorumNodeGone("n1", 0), true, func(error) {})
	pump(l, nodes)
	sameState(t, nodes)
	wantStats(t, nodes[1], 1, 0, 2)
	simQueue(t, nodes[0]).Ack(d.ID) // stale: does nothing
	pump(l, nodes)
	wantStats(t, nodes[1], 1, 0, 2)

	// A get op nobody waits for (its get timed out): the node it is for
	// gives the message back.
	nodes[1].ProposeQuorum(QuorumOp{Op: qopGet, VHost: DefaultVHost, Queue: "qq", Node: "n2", Boot: 101, Consumer: 999}, false, func(error) {})
	pump(l, nodes)
	sameState(t, nodes)
	wantStats(t, nodes[2], 1, 0, 2)

	d, ok = simGet(t, l, nodes, nodes[1], true)
	if !ok || string(d.Message.Body) != "m2" || d.DeliveryCount != 3 {
		t.Fatalf("last get: %v %+v", ok, d)
	}
	if _, ok := simGet(t, l, nodes, nodes[2], true); ok {
		t.Fatal("a get on an empty queue answered a message")
	}
	sameState(t, nodes)
	wantStats(t, nodes[0], 0, 0, 3)
}
