package broker

// enqueueReplicated proposes m to the replicated quorum queues among qs
// and returns how many took it and the other queues (qs, compacted in
// place). Each proposal's future joins the publisher's waits: its confirm
// goes out once the log has committed the message.
func (p *Publisher) enqueueReplicated(m *Message, qs []*Queue) (int, []*Queue) {
	n := 0
	rest := qs[:0]
	for _, q := range qs {
		rq, ok := q.kind.(*raftQuorum)
		if !ok {
			rest = append(rest, q)
			continue
		}
		f, congested := rq.publish(m)
		if len(p.quorumWaits) >= maxQuorumWaits {
			p.foldQuorumWaits() // a publisher that never waits (no confirms) keeps a few
		}
		p.quorumWaits = append(p.quorumWaits, f)
		p.quorumLast = true
		if congested {
			p.congested = append(p.congested, q)
		}
		n++
	}
	clear(qs[len(rest):])
	return n, rest
}

// waitQuorum makes each pending quorum proposal one part of a joined
// wait (waitAll counts them), and forgets them.
func (p *Publisher) waitQuorum(done func(error)) {
	for _, f := range p.quorumWaits {
		f.then(done)
	}
	clear(p.quorumWaits)
	p.quorumWaits = p.quorumWaits[:0]
}

// maxQuorumWaits bounds the futures a publisher keeps between waits.
const maxQuorumWaits = 256

// foldQuorumWaits replaces the pending futures by one that completes when
// they all have, with the first error.
func (p *Publisher) foldQuorumWaits() {
	agg := &quorumFuture{}
	j := &joinedWait{done: agg.complete}
	j.left.Store(int64(len(p.quorumWaits)))
	for _, f := range p.quorumWaits {
		f.then(j.one)
	}
	clear(p.quorumWaits)
	p.quorumWaits = append(p.quorumWaits[:0], agg)
}
