package broker

import (
	"cmp"
	"errors"
	"slices"
	"sync"
)

// Replicated quorum queues (cluster mode). Every change to a quorum queue's
// state -- a message enqueued, a consumer attached or detached, deliveries
// settled, a node gone -- is a QuorumOp in the cluster's one Raft log. The
// log applies each op on every node (ApplyQuorum) to the queue's state
// (quorum_state.go), which decides deterministically which consumer gets
// which message: every node computes the same assignment, and each node
// hands the deliveries assigned to its own consumers to their sinks
// (quorum_replicated.go). The broker declares the seam (QuorumLog); the
// cluster package implements it, so the core never imports Raft.

// Quorum op names; frozen (they are in the Raft log).
const (
	qopEnqueue = "enq"
	qopAttach  = "attach"
	qopDetach  = "detach"
	qopSettle  = "settle"
	qopGone    = "gone"
	qopGet     = "get" // a basic.get: a one-shot checkout (quorum_get.go)
)

// QuorumOp is one change to a replicated quorum queue, as plain data.
type QuorumOp struct {
	Op    string `json:"op"`
	VHost string `json:"v,omitempty"`
	Queue string `json:"q,omitempty"`
	// Node and Boot name a node's incarnation (a consumer's, or the one
	// gone); Boot 0 in a gone op means every incarnation but ExceptBoot.
	Node       string `json:"n,omitempty"`
	Boot       uint64 `json:"b,omitempty"`
	ExceptBoot uint64 `json:"xb,omitempty"`
	// Consumer is the consumer's number on its node (in a get op, the
	// get's number there); Prefetch its credit.
	Consumer uint64 `json:"c,omitempty"`
	Prefetch int    `json:"p,omitempty"`
	// Meta (encodeMeta's form) and Body are an enqueued message.
	Meta []byte `json:"m,omitempty"`
	Body []byte `json:"d,omitempty"`
	// IDs are the delivery ids a settle op settles; How is settleKind
	// (in a get op, 1 is no-ack).
	IDs []uint64 `json:"i,omitempty"`
	How int      `json:"h,omitempty"`
}

// QuorumLog carries quorum ops to the cluster's log.
type QuorumLog interface {
	// ProposeQuorum appends op to the log after every op proposed earlier
	// on this node, and calls done once the entry holding it is committed
	// (a majority has it on disk) or has failed. With retry the op is
	// proposed again until it commits (settlements, consumer changes: they
	// are idempotent); without, a failure goes to done (an enqueue: its
	// publisher gets a nack). done must not block.
	ProposeQuorum(op QuorumOp, retry bool, done func(error))
	// Congested reports whether the ops waiting to be proposed are many:
	// publishers should wait on FlowChan.
	Congested() bool
	FlowChan() <-chan struct{}
	// Replicas are the queue's leader, members and online members, by
	// node name (all nodes are members of the one Raft group).
	Replicas() (leader string, members, online []string)
}

// quorumCluster is the broker's cluster-mode state for quorum queues.
type quorumCluster struct {
	node string
	boot uint64
	mu   sync.RWMutex
	log  QuorumLog // nil until SetQuorumLog
}

func (qc *quorumCluster) propose(op QuorumOp, retry bool, done func(error)) {
	qc.mu.RLock()
	l := qc.log
	qc.mu.RUnlock()
	if l == nil {
		done(errors.New("the cluster node is not started"))
		return
	}
	l.ProposeQuorum(op, retry, done)
}

func (qc *quorumCluster) qlog() QuorumLog {
	qc.mu.RLock()
	defer qc.mu.RUnlock()
	return qc.log
}

// EnableReplicatedQuorum makes every quorum queue declared from now on a
// replicated one, this node being node (incarnation boot, which differs
// on every start). Call it before the definitions are restored, in
// cluster mode only: single-node mode keeps the classic engine.
func (b *Broker) EnableReplicatedQuorum(node string, boot uint64) {
	b.quorum.Store(&quorumCluster{node: node, boot: boot})
}

// SetQuorumLog hands the replicated quorum queues the cluster's log.
func (b *Broker) SetQuorumLog(l QuorumLog) {
	if qc := b.quorum.Load(); qc != nil {
		qc.mu.Lock()
		qc.log = l
		qc.mu.Unlock()
	}
}

// QuorumNodeGone is the op the leader proposes when node stops answering
// (every incarnation of it); a starting node proposes it for its own
// earlier incarnations (exceptBoot = its own).
func QuorumNodeGone(node string, exceptBoot uint64) QuorumOp {
	return QuorumOp{Op: qopGone, Node: node, ExceptBoot: exceptBoot}
}

// replicatedQueues are the vhosts' replicated quorum queues, sorted by
// vhost and name (ops that touch every queue apply in the same order on
// every node).
func (b *Broker) replicatedQueues() []*raftQuorum {
	var out []*raftQuorum
	for _, v := range b.VHosts() {
		for _, q := range v.Queues() {
			if rq, ok := q.kind.(*raftQuorum); ok {
				out = append(out, rq)
			}
		}
	}
	slices.SortFunc(out, func(a, c *raftQuorum) int {
		return cmp.Or(cmp.Compare(a.vhost.name, c.vhost.name), cmp.Compare(a.name, c.name))
	})
	return out
}

func (b *Broker) replicatedQueue(vhost, name string) *raftQuorum {
	v := b.VHost(vhost)
	if v == nil {
		return nil
	}
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	if q == nil {
		return nil
	}
	rq, _ := q.kind.(*raftQuorum)
	return rq
}

// ApplyQuorum applies one op of the log; origin and originBoot are the
// node incarnation that proposed it (it alone publishes what the op
// dead-letters: not a later incarnation replaying its log). The cluster's
// FSM calls it, in log order, on every node.
func (b *Broker) ApplyQuorum(op QuorumOp, origin string, originBoot uint64) {
	qc := b.quorum.Load()
	self := qc != nil && origin == qc.node && originBoot == qc.boot
	if op.Op == qopGone {
		for _, rq := range b.replicatedQueues() {
			rq.applyOp(op, self)
		}
		return
	}
	if rq := b.replicatedQueue(op.VHost, op.Queue); rq != nil {
		rq.applyOp(op, self)
	}
}

// QuorumSnapshot is every replicated quorum queue's state, for the Raft
// snapshot. Call it on the FSM's goroutine.
type QuorumSnapshot struct {
	Queues []QuorumQueueState `json:"queues"`
}

// QuorumQueueState is one queue's state in a snapshot.
type QuorumQueueState struct {
	VHost string     `json:"vhost"`
	Name  string     `json:"name"`
	State quorumDump `json:"state"`
}

// SnapshotQuorum returns the state of every replicated quorum queue.
func (b *Broker) SnapshotQuorum() QuorumSnapshot {
	var s QuorumSnapshot
	for _, rq := range b.replicatedQueues() {
		s.Queues = append(s.Queues, QuorumQueueState{VHost: rq.vhost.name, Name: rq.name, State: rq.dump()})
	}
	return s
}

// RestoreQuorum replaces every replicated quorum queue's state with the
// snapshot's (a queue the snapshot lacks becomes empty).
func (b *Broker) RestoreQuorum(s QuorumSnapshot) {
	type key struct{ v, n string }
	m := map[key]quorumDump{}
	for _, q := range s.Queues {
		m[key{q.VHost, q.Name}] = q.State
	}
	for _, rq := range b.replicatedQueues() {
		rq.restore(m[key{rq.vhost.name, rq.name}])
	}
}

// QuorumBoot is this node's incarnation in cluster mode; ok is false in
// single-node mode.
func (b *Broker) QuorumBoot() (boot uint64, ok bool) {
	if qc := b.quorum.Load(); qc != nil {
		return qc.boot, true
	}
	return 0, false
}

// Replicated reports whether the queue is a quorum queue replicated
// through the cluster's log.
func (q *Queue) Replicated() bool {
	_, ok := q.kind.(*raftQuorum)
	return ok
}

// Replicas are a replicated quorum queue's leader, members and online
// members (node names; RabbitMQ's leader, members and online); ok is false
// for every other queue.
func (q *Queue) Replicas() (leader string, members, online []string, ok bool) {
	rq, isRQ := q.kind.(*raftQuorum)
	if !isRQ {
		return "", nil, nil, false
	}
	l := rq.qc.qlog()
	if l == nil {
		return "", []string{rq.qc.node}, nil, true
	}
	leader, members, online = l.Replicas()
	return leader, members, online, true
}
