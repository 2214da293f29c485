package broker

import "time"

// basic.get on a replicated quorum queue. A get is an op through the log
// (qopGet): the state hands the head ready message, if any, to the
// requester named by (node, incarnation, get number) -- a number taken from
// the same counter as this node's consumers, so no consumer has it. Every
// node applies it alike; the requesting node, which waits for the apply,
// answers get-ok or get-empty. The delivery is then pending under the
// requester like a consumer's: the channel's ack, reject or close
// (requeue) settles it with the settle op, and the node-gone op returns
// it when the node dies.

// quorumGetTimeout bounds a get's wait for its op to be applied here
// (proposals wait up to 3 s for a leader, forwarded batches 5 s for the
// commit).
const quorumGetTimeout = 10 * time.Second

type qgetResult struct {
	d   Delivery
	ok  bool
	err error
}

func (q *raftQuorum) get(_ Owner, noAck bool) (Delivery, bool, error) {
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return Delivery{}, false, q.notFound()
	}
	q.nextLocal++
	id := q.nextLocal
	ch := make(chan qgetResult, 1)
	q.gets[id] = ch
	q.mu.Unlock()
	how := 0
	if noAck {
		how = 1
	}
	// Not retried: a failed proposal reached no log, and the client is
	// told at once.
	q.qc.propose(QuorumOp{Op: qopGet, VHost: q.vhost.name, Queue: q.name, Node: q.qc.node, Boot: q.qc.boot, Consumer: id, How: how},
		false, func(err error) {
			if err != nil {
				q.finishGet(id, qgetResult{err: errorf(CodeResourceError, "basic.get on quorum queue '%s' in vhost '%s' failed: %v", q.name, q.vhost.name, err)})
			}
		})
	t := time.NewTimer(quorumGetTimeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.d, r.ok, r.err
	case <-t.C:
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case r := <-ch: // applied while the timer fired
		return r.d, r.ok, r.err
	default:
	}
	// If the op is applied later, nobody waits: applyOp gives it back.
	delete(q.gets, id)
	return Delivery{}, false, errorf(CodeResourceError, "basic.get on quorum queue '%s' in vhost '%s': the cluster did not apply it within %s", q.name, q.vhost.name, quorumGetTimeout)
}

// finishGet answers get id's waiter, if it still waits.
func (q *raftQuorum) finishGet(id uint64, r qgetResult) {
	q.mu.Lock()
	q.finishGetLocked(id, r)
	q.mu.Unlock()
}

func (q *raftQuorum) finishGetLocked(id uint64, r qgetResult) bool {
	ch := q.gets[id]
	if ch == nil {
		return false
	}
	delete(q.gets, id)
	ch <- r
	return true
}

// applyGetLocked is this node's part of an applied get op, after the
// state's checkout (d nil: the queue was empty). It reports a delivery
// nobody waits for any more (the get timed out), to be requeued.
func (q *raftQuorum) applyGetLocked(id uint64, d *qdelivery, noAck bool) (ghost bool) {
	if d == nil {
		q.finishGetLocked(id, qgetResult{})
		return false
	}
	r := qgetResult{ok: true, d: q.getDelivery(d)}
	if !q.finishGetLocked(id, r) {
		return !noAck
	}
	if !noAck {
		q.localDel[d.ID] = id
	}
	return false
}

func (q *raftQuorum) getDelivery(d *qdelivery) Delivery {
	return Delivery{Message: d.Msg.message(), Queue: q.Queue, ID: d.ID, Redelivered: d.Msg.Redelivered,
		Remaining: q.st.readyLen(), DeliveryCount: d.Msg.Deliveries - 1}
}

// failGetsLocked answers every waiting get with err (the queue is
// deleted, the broker stops).
func (q *raftQuorum) failGetsLocked(err error) {
	for id, ch := range q.gets {
		delete(q.gets, id)
		ch <- qgetResult{err: err}
	}
}
