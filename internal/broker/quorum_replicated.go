package broker

import (
	"slices"
	"sync"
)

// raftQuorum is a quorum queue in cluster mode: its state (quorumState) is
// changed only by the ops the cluster's log applies (applyOp), on every
// node alike. The queueKind methods the adapters call turn into proposed
// ops: a publish, a consume, a cancel, an ack. What is node-local is only
// which of the state's consumers live here (locals) and the deliveries
// that wait for room in their sinks.
type raftQuorum struct {
	*Queue
	qc *quorumCluster

	mu        sync.Mutex // guards everything below
	cfg       queueConfig
	policy    *Policy
	st        quorumState
	locals    map[uint64]*qlocal // this node's consumers, by their number in the state
	byCons    map[*Consumer]*qlocal
	localDel  map[uint64]uint64          // delivery id -> consumer (or get) number, for this node's deliveries
	gets      map[uint64]chan qgetResult // basic.gets waiting for their op, by get number
	nextLocal uint64
	deleted   bool
}

// qlocal is one of this node's consumers of the queue.
type qlocal struct {
	c       *Consumer
	id      uint64
	backlog []Delivery // assigned, waiting for room in the sink
}

// quorumPrefetch is the credit of a consumer that sets no prefetch (or
// consumes without acks, which this node then acks for it).
const quorumPrefetch = 256

func newRaftQuorum(q *Queue, qc *quorumCluster, cfg queueConfig, p *Policy) *raftQuorum {
	return &raftQuorum{Queue: q, qc: qc, cfg: cfg, policy: p, st: newQuorumState(), locals: map[uint64]*qlocal{},
		byCons: map[*Consumer]*qlocal{}, localDel: map[uint64]uint64{}, gets: map[uint64]chan qgetResult{}}
}

func (q *raftQuorum) key(id uint64) consumerKey {
	return consumerKey{Node: q.qc.node, Boot: q.qc.boot, ID: id}
}

// quorumFuture is the outcome of one proposed enqueue, for its publisher's
// confirm.
type quorumFuture struct {
	mu   sync.Mutex
	done bool
	err  error
	cbs  []func(error)
}

func (f *quorumFuture) complete(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	cbs := f.cbs
	f.cbs = nil
	f.mu.Unlock()
	for _, cb := range cbs {
		cb(err)
	}
}

func (f *quorumFuture) then(cb func(error)) {
	f.mu.Lock()
	if f.done {
		err := f.err
		f.mu.Unlock()
		cb(err)
		return
	}
	f.cbs = append(f.cbs, cb)
	f.mu.Unlock()
}

func (q *raftQuorum) enqueueOp(m *Message) QuorumOp {
	return QuorumOp{Op: qopEnqueue, VHost: q.vhost.name, Queue: q.name, Meta: encodeMeta(m), Body: m.Body}
}

// publish proposes m and returns its future (Publisher.enqueueReplicated).
func (q *raftQuorum) publish(m *Message) (*quorumFuture, bool) {
	f := &quorumFuture{}
	q.qc.propose(q.enqueueOp(m), false, f.complete)
	l := q.qc.qlog()
	return f, l != nil && l.Congested()
}

// enqueue is for the broker's own publishes (dead letters, delayed
// messages): nobody waits for a confirm.
func (q *raftQuorum) enqueue(m *Message, expiration int64) (ok, rejected, congested, stored bool) {
	q.qc.propose(q.enqueueOp(m), false, func(err error) {
		if err != nil {
			q.vhost.broker.log.Warn("a message for a quorum queue was not replicated; dropped", "queue", q.name, "vhost", q.vhost.name, "err", err)
		}
	})
	return true, false, false, false
}

func (q *raftQuorum) flowChan(Owner) <-chan struct{} {
	if l := q.qc.qlog(); l != nil {
		return l.FlowChan()
	}
	return nil
}

func (q *raftQuorum) consume(c *Consumer) error {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return q.notFound()
	}
	q.nextLocal++
	l := &qlocal{c: c, id: q.nextLocal}
	q.locals[l.id], q.byCons[c] = l, l
	q.mu.Unlock()
	q.proposeAttach(l)
	return nil
}

func (q *raftQuorum) proposeAttach(l *qlocal) {
	prefetch := int(l.c.prefetch)
	if prefetch == 0 && l.c.limiter != nil {
		prefetch = int(l.c.limiter.limit.Load())
	}
	if prefetch <= 0 || l.c.noAck {
		prefetch = quorumPrefetch
	}
	q.qc.propose(QuorumOp{Op: qopAttach, VHost: q.vhost.name, Queue: q.name, Node: q.qc.node, Boot: q.qc.boot,
		Consumer: l.id, Prefetch: prefetch}, true, noop)
}

func (q *raftQuorum) removeConsumer(c *Consumer) {
	if c.cancelled.Swap(true) {
		return
	}
	q.mu.Lock()
	l := q.byCons[c]
	if l == nil {
		q.mu.Unlock()
		return
	}
	delete(q.byCons, c)
	delete(q.locals, l.id)
	var back []uint64
	for _, d := range l.backlog {
		back = append(back, d.ID)
		delete(q.localDel, d.ID)
	}
	l.backlog = nil
	q.mu.Unlock()
	q.qc.propose(QuorumOp{Op: qopDetach, VHost: q.vhost.name, Queue: q.name, Node: q.qc.node, Boot: q.qc.boot, Consumer: l.id}, true, noop)
	if len(back) > 0 {
		q.proposeSettle(back, settleRequeue)
	}
}

// dispatch offers the consumers' backlogs again (a sink has room).
func (q *raftQuorum) dispatch() {
	q.mu.Lock()
	var autoAck []uint64
	for _, id := range slices.Sorted(mapsKeys(q.locals)) {
		autoAck = q.flushLocked(q.locals[id], autoAck)
	}
	q.mu.Unlock()
	if len(autoAck) > 0 {
		q.proposeSettle(autoAck, settleAck)
	}
}

func mapsKeys(m map[uint64]*qlocal) func(func(uint64) bool) {
	return func(yield func(uint64) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// flushLocked hands l's backlog to its sink while it takes them; the ids
// of what a no-ack consumer took are appended to autoAck.
func (q *raftQuorum) flushLocked(l *qlocal, autoAck []uint64) []uint64 {
	i := 0
	for ; i < len(l.backlog); i++ {
		if l.c.cancelled.Load() || !l.c.sink.Deliver(l.backlog[i]) {
			break
		}
		if l.c.noAck {
			autoAck = append(autoAck, l.backlog[i].ID)
			delete(q.localDel, l.backlog[i].ID)
		}
	}
	l.backlog = slices.Delete(l.backlog, 0, i)
	return autoAck
}

func (q *raftQuorum) settle(ids []uint64, how settleKind) {
	q.mu.Lock()
	for _, id := range ids {
		delete(q.localDel, id)
	}
	q.mu.Unlock()
	q.proposeSettle(ids, how)
}

func (q *raftQuorum) proposeSettle(ids []uint64, how settleKind) {
	q.qc.propose(QuorumOp{Op: qopSettle, VHost: q.vhost.name, Queue: q.name, IDs: ids, How: int(how)}, true, noop)
}

func (q *raftQuorum) touch([]uint64) {}
func (q *raftQuorum) used()          {}

// close answers the gets still waiting: the broker stops.
func (q *raftQuorum) close() {
	q.mu.Lock()
	q.failGetsLocked(errorf(CodeResourceError, "basic.get on quorum queue '%s' in vhost '%s': the broker is stopping", q.name, q.vhost.name))
	q.mu.Unlock()
}

func (q *raftQuorum) stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	var bytes int64
	for _, m := range q.st.returns {
		bytes += int64(len(m.Body))
	}
	for _, m := range q.st.ready[q.st.readyHead:] {
		bytes += int64(len(m.Body))
	}
	return QueueStats{Ready: q.st.readyLen(), ReadyBytes: bytes, Unacked: len(q.st.pending), Consumers: len(q.st.consumers),
		Published: q.st.published, Delivered: q.st.delivered, Acks: q.st.acked}
}

func (q *raftQuorum) consumerList() []*Consumer {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*Consumer, 0, len(q.locals))
	for _, id := range slices.Sorted(mapsKeys(q.locals)) {
		out = append(out, q.locals[id].c)
	}
	return out
}

func (q *raftQuorum) policyName() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.policy == nil {
		return ""
	}
	return q.policy.Name
}

func (q *raftQuorum) applyPolicy(p *Policy) {
	q.mu.Lock()
	q.policy = p
	q.cfg = q.vhost.queueConfig(q.args, p)
	q.mu.Unlock()
}

// purge is applied from the log (a replicated PurgeQueue) on every node.
func (q *raftQuorum) purge() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st.purge()
}

func (q *raftQuorum) markDeleted() (int, bool) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return 0, false
	}
	q.deleted = true
	n := q.st.readyLen()
	q.st = newQuorumState()
	var cs []*Consumer
	for _, id := range slices.Sorted(mapsKeys(q.locals)) {
		cs = append(cs, q.locals[id].c)
	}
	q.locals, q.byCons, q.localDel = map[uint64]*qlocal{}, map[*Consumer]*qlocal{}, map[uint64]uint64{}
	q.failGetsLocked(q.notFound())
	for _, c := range cs {
		c.cancelled.Store(true)
		c.sink.Cancelled(c)
	}
	q.mu.Unlock()
	return n, true
}

// applyOp applies one op of the log to the state, then does this node's
// part: deliveries to its consumers, dead letters it alone publishes
// (origin), deliveries to consumers it no longer has given back.
func (q *raftQuorum) applyOp(op QuorumOp, self bool) {
	var dls []deadLetter
	var ghost []uint64     // assigned to a consumer of this node that left
	var ghostCons []uint64 // and that consumer, to detach
	var reattach []*qlocal // this incarnation was declared gone while alive
	var autoAck []uint64   // taken by no-ack consumers
	var touched []*qlocal  // consumers of this node given deliveries
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return
	}
	giveBack := func(m *qmsg) {
		if q.cfg.deliveryLimit >= 0 && int64(m.Deliveries) > q.cfg.deliveryLimit {
			if self && q.cfg.hasDLX {
				dls = append(dls, q.deadLetterOf(m, reasonDeliveryLimit))
			}
			return
		}
		q.st.giveBack(m)
	}
	switch op.Op {
	case qopEnqueue:
		q.st.push(&qmsg{Meta: op.Meta, Body: op.Body})
	case qopAttach:
		q.st.attach(consumerKey{Node: op.Node, Boot: op.Boot, ID: op.Consumer}, op.Prefetch)
	case qopDetach:
		q.st.detach(consumerKey{Node: op.Node, Boot: op.Boot, ID: op.Consumer})
	case qopSettle:
		for _, id := range op.IDs {
			d := q.st.settle(id)
			if d == nil {
				continue
			}
			switch settleKind(op.How) {
			case settleAck:
				q.st.acked++
			case settleRequeue:
				giveBack(d.Msg)
			case settleDiscard:
				if self && q.cfg.hasDLX {
					dls = append(dls, q.deadLetterOf(d.Msg, reasonRejected))
				}
			}
		}
	case qopGet:
		k := consumerKey{Node: op.Node, Boot: op.Boot, ID: op.Consumer}
		d := q.st.checkout(k, op.How == 1)
		if op.Node == q.qc.node && op.Boot == q.qc.boot && q.applyGetLocked(op.Consumer, d, op.How == 1) {
			ghost = append(ghost, d.ID)
		}
	case qopGone:
		match := func(k consumerKey) bool {
			return k.Node == op.Node && k.Boot != op.ExceptBoot
		}
		for _, d := range q.st.gone(match) {
			giveBack(d.Msg)
		}
		if op.Node == q.qc.node && op.ExceptBoot != q.qc.boot {
			// This very node was taken for dead: its deliveries went back.
			// Its consumers carry on under new numbers.
			for _, id := range slices.Sorted(mapsKeys(q.locals)) {
				l := q.locals[id]
				delete(q.locals, id)
				for _, d := range l.backlog {
					delete(q.localDel, d.ID)
				}
				l.backlog = nil
				q.nextLocal++
				l.id = q.nextLocal
				reattach = append(reattach, l)
			}
			for _, l := range reattach {
				q.locals[l.id] = l
			}
			clear(q.localDel)
		}
	}
	q.st.assign(func(d *qdelivery) {
		if d.Key.Node != q.qc.node || d.Key.Boot != q.qc.boot {
			return
		}
		l := q.locals[d.Key.ID]
		if l == nil {
			ghost = append(ghost, d.ID)
			if !slices.Contains(ghostCons, d.Key.ID) {
				ghostCons = append(ghostCons, d.Key.ID)
			}
			return
		}
		m := d.Msg.message()
		q.localDel[d.ID] = l.id
		l.backlog = append(l.backlog, Delivery{Message: m, Queue: q.Queue, ID: d.ID, Redelivered: d.Msg.Redelivered,
			Consumer: l.c, DeliveryCount: d.Msg.Deliveries - 1})
		if !slices.Contains(touched, l) {
			touched = append(touched, l)
		}
	})
	for _, l := range touched {
		autoAck = q.flushLocked(l, autoAck)
	}
	q.mu.Unlock()
	if len(dls) > 0 {
		q.vhost.publishDeadLetters(dls)
	}
	for _, id := range ghostCons {
		q.qc.propose(QuorumOp{Op: qopDetach, VHost: q.vhost.name, Queue: q.name, Node: q.qc.node, Boot: q.qc.boot, Consumer: id}, true, noop)
	}
	if len(ghost) > 0 {
		q.proposeSettle(ghost, settleRequeue)
	}
	if len(autoAck) > 0 {
		q.proposeSettle(autoAck, settleAck)
	}
	for _, l := range reattach {
		q.proposeAttach(l)
	}
}

func (q *raftQuorum) deadLetterOf(m *qmsg, reason string) deadLetter {
	return deadLetter{msg: m.message(), reason: reason, queue: q.name, dlx: q.cfg.dlx, dlrk: q.cfg.dlrk, hasDLRK: q.cfg.hasDLRK}
}

// message decodes the op's message once, on the node that needs it.
func (m *qmsg) message() *Message {
	if m.msg == nil {
		msg := &Message{Body: m.Body}
		_ = decodeMeta(m.Meta, msg) // written by encodeMeta on the proposing node
		m.msg = msg
	}
	return m.msg
}

func (q *raftQuorum) dump() quorumDump {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.st.dump()
}

// restore replaces the state with a snapshot's (a node that fell behind
// gets one from the leader). This node's consumers the snapshot lacks
// attach again; the deliveries it assigns to this node's consumers that
// this node has not made (they were in the entries the snapshot skips)
// are made now, or given back if the consumer has gone.
func (q *raftQuorum) restore(d quorumDump) {
	q.mu.Lock()
	q.st = stateFromDump(d)
	var again []*qlocal
	for _, id := range slices.Sorted(mapsKeys(q.locals)) {
		l := q.locals[id]
		if _, c := q.st.consumer(q.key(id)); c == nil {
			again = append(again, l)
		}
	}
	var ghost, autoAck []uint64
	touched := map[*qlocal]bool{}
	for _, p := range d.Pending {
		if p.Key.Node != q.qc.node || p.Key.Boot != q.qc.boot {
			continue
		}
		if _, made := q.localDel[p.ID]; made {
			continue
		}
		if _, waits := q.gets[p.Key.ID]; waits {
			// A get whose op the snapshot covers: its delivery is here.
			q.finishGetLocked(p.Key.ID, qgetResult{ok: true, d: q.getDelivery(p)})
			q.localDel[p.ID] = p.Key.ID
			continue
		}
		l := q.locals[p.Key.ID]
		if l == nil {
			ghost = append(ghost, p.ID)
			continue
		}
		q.localDel[p.ID] = l.id
		l.backlog = append(l.backlog, Delivery{Message: p.Msg.message(), Queue: q.Queue, ID: p.ID, Redelivered: p.Msg.Redelivered,
			Consumer: l.c, DeliveryCount: p.Msg.Deliveries - 1})
		touched[l] = true
	}
	for _, id := range slices.Sorted(mapsKeys(q.locals)) {
		if l := q.locals[id]; touched[l] {
			autoAck = q.flushLocked(l, autoAck)
		}
	}
	q.mu.Unlock()
	if len(ghost) > 0 {
		q.proposeSettle(ghost, settleRequeue)
	}
	if len(autoAck) > 0 {
		q.proposeSettle(autoAck, settleAck)
	}
	for _, l := range again {
		q.proposeAttach(l)
	}
}
