package broker

import (
	"slices"
)

// quorumState is a replicated quorum queue's state machine: the same on
// every node, because it changes only by the ops the log applies, in log
// order, and decides everything itself (message and delivery ids, which
// consumer gets which message). Nothing here reads a clock, a random
// number or a map's iteration order.
type quorumState struct {
	nextMsg, nextDel uint64
	returns          []*qmsg // returned messages, by message id: delivered before ready
	ready            []*qmsg // FIFO
	readyHead        int
	consumers        []*qconsumer // attach order
	rr               int          // round-robin position in consumers
	pending          map[uint64]*qdelivery
	published        uint64
	delivered        uint64
	acked            uint64
}

// qmsg is one message of a quorum queue.
type qmsg struct {
	ID          uint64   `json:"id"`
	Meta        []byte   `json:"m"`
	Body        []byte   `json:"d"`
	Deliveries  uint32   `json:"n,omitempty"`
	Redelivered bool     `json:"r,omitempty"`
	msg         *Message // decoded on the node that delivers it
}

// consumerKey names a consumer cluster-wide: its node's incarnation and
// its number there.
type consumerKey struct {
	Node string `json:"node"`
	Boot uint64 `json:"boot"`
	ID   uint64 `json:"id"`
}

type qconsumer struct {
	Key      consumerKey `json:"key"`
	Prefetch int         `json:"prefetch"`
	Unacked  int         `json:"unacked"`
}

// qdelivery is a message assigned to a consumer and not settled yet.
type qdelivery struct {
	ID  uint64      `json:"id"`
	Msg *qmsg       `json:"msg"`
	Key consumerKey `json:"key"`
}

// quorumDump is a quorumState as a snapshot holds it.
type quorumDump struct {
	NextMsg   uint64       `json:"next_msg"`
	NextDel   uint64       `json:"next_del"`
	Returns   []*qmsg      `json:"returns,omitempty"`
	Ready     []*qmsg      `json:"ready,omitempty"`
	Consumers []*qconsumer `json:"consumers,omitempty"`
	RR        int          `json:"rr,omitempty"`
	Pending   []*qdelivery `json:"pending,omitempty"`
	Published uint64       `json:"published,omitempty"`
	Delivered uint64       `json:"delivered,omitempty"`
	Acked     uint64       `json:"acked,omitempty"`
}

func newQuorumState() quorumState { return quorumState{pending: make(map[uint64]*qdelivery)} }

// dump shares the messages (the caller encodes it before the next op).
func (s *quorumState) dump() quorumDump {
	d := quorumDump{NextMsg: s.nextMsg, NextDel: s.nextDel, Returns: slices.Clone(s.returns), Ready: slices.Clone(s.ready[s.readyHead:]),
		RR: s.rr, Published: s.published, Delivered: s.delivered, Acked: s.acked}
	for _, c := range s.consumers {
		cc := *c
		d.Consumers = append(d.Consumers, &cc)
	}
	for _, p := range s.pending {
		d.Pending = append(d.Pending, p)
	}
	slices.SortFunc(d.Pending, func(a, b *qdelivery) int { return cmpU64(a.ID, b.ID) })
	return d
}

func stateFromDump(d quorumDump) quorumState {
	s := newQuorumState()
	s.nextMsg, s.nextDel, s.rr = d.NextMsg, d.NextDel, d.RR
	s.returns, s.ready = d.Returns, d.Ready
	s.consumers = d.Consumers
	s.published, s.delivered, s.acked = d.Published, d.Delivered, d.Acked
	for _, p := range d.Pending {
		s.pending[p.ID] = p
	}
	return s
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *quorumState) readyLen() int { return len(s.returns) + len(s.ready) - s.readyHead }

func (s *quorumState) push(m *qmsg) {
	m.ID = s.nextMsg
	s.nextMsg++
	s.ready = append(s.ready, m)
	s.published++
}

// pop takes the next message: returned ones first, in id order.
func (s *quorumState) pop() *qmsg {
	if len(s.returns) > 0 {
		m := s.returns[0]
		s.returns[0] = nil
		s.returns = s.returns[1:]
		return m
	}
	m := s.ready[s.readyHead]
	s.ready[s.readyHead] = nil
	s.readyHead++
	if s.readyHead == len(s.ready) {
		s.ready, s.readyHead = s.ready[:0], 0
	} else if s.readyHead >= 1024 && 2*s.readyHead >= len(s.ready) {
		k := copy(s.ready, s.ready[s.readyHead:])
		clear(s.ready[k:])
		s.ready, s.readyHead = s.ready[:k], 0
	}
	return m
}

// giveBack returns m to the queue, flagged redelivered, in id order among
// the returned messages.
func (s *quorumState) giveBack(m *qmsg) {
	m.Redelivered = true
	i, _ := slices.BinarySearchFunc(s.returns, m.ID, func(x *qmsg, id uint64) int { return cmpU64(x.ID, id) })
	s.returns = slices.Insert(s.returns, i, m)
}

func (s *quorumState) consumer(k consumerKey) (int, *qconsumer) {
	for i, c := range s.consumers {
		if c.Key == k {
			return i, c
		}
	}
	return -1, nil
}

func (s *quorumState) attach(k consumerKey, prefetch int) {
	if _, c := s.consumer(k); c != nil {
		return // a retried attach
	}
	s.consumers = append(s.consumers, &qconsumer{Key: k, Prefetch: prefetch})
}

func (s *quorumState) detach(k consumerKey) {
	if i, c := s.consumer(k); c != nil {
		s.consumers = slices.Delete(s.consumers, i, i+1)
		if s.rr > i {
			s.rr--
		}
	}
}

// assign hands ready messages to consumers with credit, round-robin in
// attach order, calling out for each delivery made.
func (s *quorumState) assign(out func(d *qdelivery)) {
	for s.readyLen() > 0 && len(s.consumers) > 0 {
		n := len(s.consumers)
		found := -1
		for i := 0; i < n; i++ {
			idx := (s.rr + i) % n
			if c := s.consumers[idx]; c.Unacked < c.Prefetch {
				found = idx
				break
			}
		}
		if found < 0 {
			return
		}
		c := s.consumers[found]
		s.rr = (found + 1) % n
		m := s.pop()
		m.Deliveries++
		s.nextDel++
		d := &qdelivery{ID: s.nextDel, Msg: m, Key: c.Key}
		c.Unacked++
		s.pending[d.ID] = d
		s.delivered++
		out(d)
	}
}

// checkout takes the head ready message for a basic.get by requester k
// (a number of k's node that no consumer has), or nil if none is ready.
// With noAck the delivery is settled at once; otherwise it is pending
// under k until settled, or returned when k's node goes.
func (s *quorumState) checkout(k consumerKey, noAck bool) *qdelivery {
	if s.readyLen() == 0 {
		return nil
	}
	m := s.pop()
	m.Deliveries++
	s.nextDel++
	d := &qdelivery{ID: s.nextDel, Msg: m, Key: k}
	s.delivered++
	if noAck {
		s.acked++
	} else {
		s.pending[d.ID] = d
	}
	return d
}

// settle removes delivery id; it reports the delivery, or nil if it is
// not pending (settled before, or given back when its node went).
func (s *quorumState) settle(id uint64) *qdelivery {
	d := s.pending[id]
	if d == nil {
		return nil
	}
	delete(s.pending, id)
	if _, c := s.consumer(d.Key); c != nil {
		c.Unacked--
	}
	return d
}

// gone removes the consumers that match and returns their pending
// deliveries, in delivery id order.
func (s *quorumState) gone(match func(consumerKey) bool) []*qdelivery {
	for i := 0; i < len(s.consumers); {
		if match(s.consumers[i].Key) {
			s.detach(s.consumers[i].Key)
			continue
		}
		i++
	}
	var back []*qdelivery
	for _, d := range s.pending {
		if match(d.Key) {
			back = append(back, d)
		}
	}
	slices.SortFunc(back, func(a, b *qdelivery) int { return cmpU64(a.ID, b.ID) })
	for _, d := range back {
		delete(s.pending, d.ID)
	}
	return back
}

// purge drops the ready messages and returns how many.
func (s *quorumState) purge() int {
	n := s.readyLen()
	s.returns, s.ready, s.readyHead = nil, nil, 0
	return n
}
