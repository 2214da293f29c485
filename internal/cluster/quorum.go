package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heraldmq/herald/internal/broker"
)

// Replicated quorum queues: the broker proposes ops (broker.QuorumOp)
// through ProposeQuorum; a proposer goroutine gathers the ops waiting at
// that moment into one log entry (many publishes in flight share one Raft
// append and one fsync) and hands it to the leader: raft.Apply here when
// this node leads (pipelined: the next batch does not wait for the last to
// commit), else over a stream to the leader (qstream.go) that keeps a
// node's ops in their order in the log. Every node's FSM
// applies the entry's ops with broker.ApplyQuorum.
//
// Every op has a number, increasing on this node's incarnation (origin,
// boot); the FSM applies an op only if its number is above the last it
// applied from that incarnation. So a batch whose fate is unknown (the
// leader died while it was on its way) is simply sent again, in order,
// until it commits or its op's deadline passes (then an enqueue fails:
// its publisher gets a nack): never applied twice, never reordered.

const (
	// qBatchOps and qBatchBytes bound one entry (an RPC carries it base64
	// twice over: far below maxRequest).
	qBatchOps   = 2048
	qBatchBytes = 2 << 20
	// qHigh ops waiting make publishers wait (flow control) until the
	// backlog is down to qLow.
	qHigh = 16384
	qLow  = 8192
	// qForwardTimeout bounds a follower's wait for the leader to commit
	// its batch; a batch that times out fails (its publishers get nacks;
	// retried ops are proposed again).
	qForwardTimeout = 5 * time.Second
	qRetryPause     = 100 * time.Millisecond
	qLeaderWait     = 3 * time.Second
)

var errNoLeader = errors.New("cluster: no leader")

type qpending struct {
	op       broker.QuorumOp
	seq      uint64
	deadline time.Time
	retry    bool
	done     func(error)
	size     int
}

type qinflight struct {
	f     raft.ApplyFuture
	batch []qpending
}

// qproposer gathers and sends a node's quorum ops.
type qproposer struct {
	n        *Node
	boot     uint64
	inflight atomic.Int64 // batches appended here as leader, not yet reported
	mu       sync.Mutex
	seq      uint64
	ops      []qpending    // by seq
	flow     chan struct{} // closed once the backlog is down to qLow; nil when not congested
	wake     chan struct{}
	appended chan qinflight
	stream   *qstream // to the leader, while it is another node; the proposer's goroutine's
}

func newQProposer(n *Node) *qproposer {
	boot, _ := n.cfg.Broker.QuorumBoot()
	return &qproposer{n: n, boot: boot, wake: make(chan struct{}, 1), appended: make(chan qinflight, 64)}
}

// ProposeQuorum implements broker.QuorumLog.
func (n *Node) ProposeQuorum(op broker.QuorumOp, retry bool, done func(error)) {
	p := n.qprop
	p.mu.Lock()
	p.seq++
	p.ops = append(p.ops, qpending{op: op, seq: p.seq, deadline: time.Now().Add(qLeaderWait), retry: retry, done: done,
		size: len(op.Body) + len(op.Meta) + 8*len(op.IDs) + 64})
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Congested implements broker.QuorumLog.
func (n *Node) Congested() bool {
	p := n.qprop
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ops) >= qHigh
}

// FlowChan implements broker.QuorumLog.
func (n *Node) FlowChan() <-chan struct{} {
	p := n.qprop
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ops) < qHigh {
		return nil
	}
	if p.flow == nil {
		p.flow = make(chan struct{})
	}
	return p.flow
}

// take removes the next batch.
func (p *qproposer) take() []qpending {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, size := 0, 0
	for k < len(p.ops) && k < qBatchOps && (k == 0 || size+p.ops[k].size <= qBatchBytes) {
		size += p.ops[k].size
		k++
	}
	if k == 0 {
		return nil
	}
	batch := make([]qpending, k)
	copy(batch, p.ops)
	rest := copy(p.ops, p.ops[k:])
	clear(p.ops[rest:])
	p.ops = p.ops[:rest]
	if p.flow != nil && len(p.ops) <= qLow {
		close(p.flow)
		p.flow = nil
	}
	return batch
}

// requeue puts the ops of a failed batch back in their place, by number.
func (p *qproposer) requeue(ops []qpending) {
	if len(ops) == 0 {
		return
	}
	p.mu.Lock()
	p.ops = append(p.ops, ops...)
	slices.SortFunc(p.ops, func(a, b qpending) int { return cmp.Compare(a.seq, b.seq) })
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// errGapped fails an op whose batch failed while a later one committed:
// applying it now would put it after them.
var errGapped = errors.New("cluster: the change was overtaken by a later one after a failure; not applied")

// finishCommitted reports a committed batch: the ops at the indexes in
// gapped were not applied (see qseqState); those that must happen are
// proposed again, the others fail.
func (p *qproposer) finishCommitted(batch []qpending, gapped []int) {
	for i, o := range batch {
		if len(gapped) > 0 && gapped[0] == i {
			gapped = gapped[1:]
			if o.retry {
				p.n.ProposeQuorum(o.op, true, o.done)
			} else {
				o.done(errGapped)
			}
			continue
		}
		o.done(nil)
	}
}

// finish reports a batch's outcome; it returns whether it failed.
func (p *qproposer) finish(batch []qpending, err error) bool {
	if err == nil {
		p.finishCommitted(batch, nil)
		return false
	}
	var again []qpending
	now := time.Now()
	for _, o := range batch {
		if (o.retry || now.Before(o.deadline)) && p.n.ctx.Err() == nil {
			again = append(again, o)
			continue
		}
		o.done(err)
	}
	p.requeue(again)
	return true
}

// run sends batches until the node stops.
func (p *qproposer) run() {
	n := p.n
	for {
		select {
		case <-n.ctx.Done():
			p.dropStream()
			p.failAll()
			return
		case <-p.wake:
		}
		for {
			batch := p.take()
			if len(batch) == 0 {
				break
			}
			if p.send(batch) {
				select { // no leader, or it failed: do not spin
				case <-n.ctx.Done():
				case <-time.After(qRetryPause):
				}
			}
		}
	}
}

// failAll fails what is left when the node stops.
func (p *qproposer) failAll() {
	p.mu.Lock()
	ops := p.ops
	p.ops = nil
	if p.flow != nil {
		close(p.flow)
		p.flow = nil
	}
	p.mu.Unlock()
	err := errors.New("cluster node stopped")
	for _, o := range ops {
		o.done(err)
	}
}

// send proposes one batch; it reports whether it failed at once.
func (p *qproposer) send(batch []qpending) bool {
	n := p.n
	e := entry{Origin: n.cfg.NodeName, Boot: p.boot, Quorum: make([]broker.QuorumOp, len(batch)), QSeqs: make([]uint64, len(batch))}
	for i, o := range batch {
		e.Quorum[i], e.QSeqs[i] = o.op, o.seq
	}
	data, err := encodeEntry(e)
	if err != nil {
		return p.finish(batch, err)
	}
	// While there is no leader (an election takes about a second), or
	// the leader cannot be reached, the batch waits up to qLeaderWait: it
	// has reached no log yet, so trying again cannot duplicate it.
	deadline := time.Now().Add(qLeaderWait)
	for {
		addr, id := n.raft.LeaderWithID()
		self := id == raft.ServerID(n.cfg.NodeName)
		switch {
		case p.stream != nil && (self || p.stream.addr != string(addr) || p.stream.isBroken()):
			// The leader changed, or the stream to it failed: what went
			// on it is reported (and put back if it failed) first.
			p.requeue(batch)
			p.dropStream()
			p.awaitInflight()
			return false
		case self:
			f := n.raft.Apply(data, qForwardTimeout)
			p.inflight.Add(1)
			select {
			case p.appended <- qinflight{f: f, batch: batch}:
				return false
			case <-n.ctx.Done():
				return p.finish(batch, errors.New("cluster node stopped"))
			}
		case addr != "" && p.inflight.Load() > 0:
			// This node led a moment ago: what it appended then is
			// reported (and put back if it failed) before anything later
			// goes to the new leader.
			p.requeue(batch)
			p.awaitInflight()
			return false
		case addr != "":
			if p.stream == nil {
				s, err := p.openQStream(string(addr))
				if err != nil {
					break // not reached: try again
				}
				p.stream = s
			}
			p.sendQStream(p.stream, batch, data)
			return false
		}
		if time.Now().After(deadline) {
			return p.finish(batch, errNoLeader)
		}
		select {
		case <-n.ctx.Done():
			return p.finish(batch, errors.New("cluster node stopped"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// awaitInflight waits until every batch sent is reported.
func (p *qproposer) awaitInflight() {
	for p.inflight.Load() > 0 && p.n.ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
}

// waitInflight reports the outcome of the batches this node, as leader,
// appended.
func (p *qproposer) waitInflight() {
	for {
		select {
		case <-p.n.ctx.Done():
			for {
				select {
				case in := <-p.appended:
					p.finish(in.batch, errors.New("cluster node stopped"))
					p.inflight.Add(-1)
				default:
					return
				}
			}
		case in := <-p.appended:
			if err := in.f.Error(); err != nil {
				p.finish(in.batch, err)
			} else {
				out, _ := in.f.Response().(quorumOutcome)
				p.finishCommitted(in.batch, out.gapped)
			}
			p.inflight.Add(-1)
		}
	}
}

// watchPeers runs on every node; while this node leads, a peer whose
// heartbeats fail is declared gone for the quorum queues: its consumers
// leave and their deliveries come back, redelivered.
func (n *Node) watchPeers(ch <-chan raft.Observation) {
	gone := map[raft.ServerID]bool{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case o := <-ch:
			switch d := o.Data.(type) {
			case raft.FailedHeartbeatObservation:
				if gone[d.PeerID] || n.raft.State() != raft.Leader {
					continue
				}
				gone[d.PeerID] = true
				peer := d.PeerID
				n.log.Info("a node stopped answering; its quorum queue consumers leave", "node", string(peer))
				n.ProposeQuorum(broker.QuorumNodeGone(string(peer), 0), true, func(error) {})
			case raft.ResumedHeartbeatObservation:
				delete(gone, d.PeerID)
			}
		}
	}
}

// announce tells the cluster that this node's earlier incarnations are
// gone (their consumers ended with the process), once a leader is known.
func (n *Node) announce(boot uint64) {
	if err := n.WaitLeader(n.ctx); err != nil {
		return
	}
	n.ProposeQuorum(broker.QuorumNodeGone(n.cfg.NodeName, boot), true, func(error) {})
}

// Replicas implements broker.QuorumLog: one Raft group carries every
// quorum queue, so its members are all the nodes.
// The members' state is asked for at most once a second (a listing of
// many queues asks once).
func (n *Node) Replicas() (leader string, members, online []string) {
	_, id := n.raft.LeaderWithID()
	n.replicasMu.Lock()
	defer n.replicasMu.Unlock()
	if time.Since(n.replicasAt) > time.Second {
		n.members, n.online = nil, nil
		for _, s := range n.Status(time.Second) {
			n.members = append(n.members, s.Name)
			if s.Running {
				n.online = append(n.online, s.Name)
			}
		}
		n.replicasAt = time.Now()
	}
	return string(id), slices.Clone(n.members), slices.Clone(n.online)
}

// startQuorum starts the proposer, the watch on the peers and, in a node
// with replicated quorum queues, hands the broker this node as their log.
func (n *Node) startQuorum() {
	ch := make(chan raft.Observation, 64)
	n.observer = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(n.observer)
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		n.qprop.run()
	}()
	go func() {
		defer n.wg.Done()
		n.qprop.waitInflight()
	}()
	go func() {
		defer n.wg.Done()
		n.watchPeers(ch)
	}()
	if boot, ok := n.cfg.Broker.QuorumBoot(); ok {
		n.cfg.Broker.SetQuorumLog(n)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.announce(boot)
		}()
	}
}

// restoreQuorum loads the replicated quorum queues' state from the newest
// snapshot: raft replays only the log after it (the node's definitions
// come from its own data dir, and NoSnapshotRestoreOnStart is set).
func restoreQuorum(b *broker.Broker, f *fsm, snaps raft.SnapshotStore) error {
	if _, ok := b.QuorumBoot(); !ok {
		return nil
	}
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("cannot open the Raft snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	var s snapshotDoc
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return fmt.Errorf("cannot read the Raft snapshot %s: %w", metas[0].ID, err)
	}
	b.RestoreQuorum(s.Quorum)
	f.qseqs = s.QuorumSeqs
	return nil
}
