package bench

import "math/bits"

// maxTrackedSeq bounds the sequence numbers a Tracker accepts, so that a
// corrupt body cannot make it allocate an enormous bitmap (2^32 sequence
// numbers per producer = 512 MiB, far beyond any realistic run).
const maxTrackedSeq = 1 << 32

// Tracker does the delivery accounting of one consumer: it remembers which
// (producer, sequence) pairs it has seen, in a bitmap per producer, and counts
// duplicates, redeliveries and out-of-order arrivals. It is not safe for
// concurrent use; each consumer owns one and the results are combined with
// Tally once the consumers have stopped.
type Tracker struct {
	streams []stream

	Received    uint64 // every valid message observed, duplicates included
	Unique      uint64 // first sightings
	Duplicated  uint64 // (producer, seq) already seen by this tracker
	Redelivered uint64 // deliveries with the redelivered flag (counted whether or not they are duplicates)
	OutOfOrder  uint64 // first sightings of a seq lower than one already seen from the same producer
	Malformed   uint64 // unknown producer id or absurd sequence number
}

type stream struct {
	seen []uint64 // bit s set = seq s seen
	next uint64   // highest seq seen + 1; 0 = nothing seen yet
}

// NewTracker returns a tracker for producer ids 0..producers-1.
func NewTracker(producers int) *Tracker {
	return &Tracker{streams: make([]stream, producers)}
}

// Observe records one delivery and reports whether it was a duplicate.
//
// A message seen a second time is a duplicate whatever its redelivered flag
// says (a redelivery of a message this consumer already processed is a
// duplicate); the flag is only counted, in Redelivered. Order is checked per
// producer within this tracker's stream: with competing consumers each
// consumer receives an increasing subsequence, so order holds per consumer.
func (t *Tracker) Observe(producer uint32, seq uint64, redelivered bool) (dup bool) {
	if int(producer) >= len(t.streams) || seq >= maxTrackedSeq {
		t.Malformed++
		return false
	}
	t.Received++
	if redelivered {
		t.Redelivered++
	}
	s := &t.streams[producer]
	w := int(seq >> 6)
	if w >= len(s.seen) {
		n := max(2*len(s.seen), w+1, 64)
		grown := make([]uint64, n)
		copy(grown, s.seen)
		s.seen = grown
	}
	bit := uint64(1) << (seq & 63)
	if s.seen[w]&bit != 0 {
		t.Duplicated++
		return true
	}
	s.seen[w] |= bit
	t.Unique++
	if seq+1 < s.next {
		t.OutOfOrder++
	} else {
		s.next = seq + 1
	}
	return false
}

// Expect describes the messages one producer should have delivered to a
// group of consumers: sequence numbers [0, Count) except those in Exclude
// (for example, publishes the broker nacked).
type Expect struct {
	Producer uint32
	Count    uint64
	Exclude  []uint64
}

// GroupTally is the accounting of one group of consumers that together should
// receive every expected message exactly once (the competing consumers of
// one queue).
type GroupTally struct {
	Expected    uint64
	Received    uint64
	Unique      uint64
	Lost        uint64
	Duplicated  uint64
	Redelivered uint64
	OutOfOrder  uint64
	Malformed   uint64
}

// Add accumulates o into g.
func (g *GroupTally) Add(o GroupTally) {
	g.Expected += o.Expected
	g.Received += o.Received
	g.Unique += o.Unique
	g.Lost += o.Lost
	g.Duplicated += o.Duplicated
	g.Redelivered += o.Redelivered
	g.OutOfOrder += o.OutOfOrder
	g.Malformed += o.Malformed
}

// Tally combines the trackers of a group. A message seen by two consumers of
// the group counts as a duplicate; an expected message seen by none is lost.
func Tally(group []*Tracker, expect []Expect) GroupTally {
	var g GroupTally
	nstreams := 0
	for _, t := range group {
		g.Received += t.Received
		g.Duplicated += t.Duplicated
		g.Redelivered += t.Redelivered
		g.OutOfOrder += t.OutOfOrder
		g.Malformed += t.Malformed
		nstreams = max(nstreams, len(t.streams))
	}
	// Union per producer; bits set in more than one tracker are cross-consumer
	// duplicates.
	unions := make([][]uint64, nstreams)
	for p := range unions {
		var words int
		for _, t := range group {
			if p < len(t.streams) {
				words = max(words, len(t.streams[p].seen))
			}
		}
		u := make([]uint64, words)
		for _, t := range group {
			if p >= len(t.streams) {
				continue
			}
			for i, w := range t.streams[p].seen {
				g.Duplicated += uint64(bits.OnesCount64(u[i] & w))
				u[i] |= w
			}
		}
		for _, w := range u {
			g.Unique += uint64(bits.OnesCount64(w))
		}
		unions[p] = u
	}
	for _, e := range expect {
		var u []uint64
		if int(e.Producer) < len(unions) {
			u = unions[e.Producer]
		}
		expected := e.Count
		lost := e.Count - countBelow(u, e.Count)
		for _, x := range e.Exclude { // Exclude holds distinct values
			if x >= e.Count {
				continue
			}
			expected--
			if !hasBit(u, x) {
				lost-- // excluded and indeed not received: not lost
			}
		}
		g.Expected += expected
		g.Lost += lost
	}
	return g
}

// tallySubscribers does the accounting of mqtt-fanout and ws-fanout: every
// subscriber should have received every expected message exactly once, so
// each one is tallied on its own (a message that reached 99 of 100
// subscribers is lost once).
func tallySubscribers(trackers []*Tracker, expect []Expect) (GroupTally, []SubscriberTally) {
	var total GroupTally
	per := make([]SubscriberTally, len(trackers))
	for i, t := range trackers {
		g := Tally([]*Tracker{t}, expect)
		total.Add(g)
		per[i] = SubscriberTally{
			Subscriber: i, Expected: g.Expected, Received: g.Received,
			Lost: g.Lost, Duplicated: g.Duplicated, OutOfOrder: g.OutOfOrder, Malformed: g.Malformed,
		}
	}
	return total, per
}

// setDeliveryCounts copies the accounting of total into res; a malformed
// delivery counts as received.
func (res *Result) setDeliveryCounts(total GroupTally) {
	res.Expected = total.Expected
	res.Received = total.Received + total.Malformed
	res.Duplicated = total.Duplicated
	res.Redelivered = total.Redelivered
	res.OutOfOrder = total.OutOfOrder
	res.Malformed = total.Malformed
	res.Lost = total.Lost
}

// countBelow counts the bits set in u among positions [0, n).
func countBelow(u []uint64, n uint64) uint64 {
	var c uint64
	full := n >> 6
	for i := uint64(0); i < full && i < uint64(len(u)); i++ {
		c += uint64(bits.OnesCount64(u[i]))
	}
	if rem := n & 63; rem != 0 && full < uint64(len(u)) {
		c += uint64(bits.OnesCount64(u[full] & (uint64(1)<<rem - 1)))
	}
	return c
}

func hasBit(u []uint64, x uint64) bool {
	w := x >> 6
	return w < uint64(len(u)) && u[w]&(uint64(1)<<(x&63)) != 0
}
