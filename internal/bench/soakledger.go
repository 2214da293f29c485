package bench

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// A soak message's body starts with "<publisher> <seq> ", then padding:
// readable in a management UI, parsed without allocation beyond the key.

func soakBody(pub string, seq uint64, size int) []byte {
	b := fmt.Appendf(nil, "%s %d ", pub, seq)
	for len(b) < size {
		b = append(b, '.')
	}
	return b
}

// parseSoakBody returns the publisher and sequence number of a body.
func parseSoakBody(b []byte) (pub string, seq uint64, ok bool) {
	s := string(b)
	i := strings.IndexByte(s, ' ')
	if i <= 0 {
		return "", 0, false
	}
	rest := s[i+1:]
	j := strings.IndexByte(rest, ' ')
	if j < 0 {
		j = len(rest)
	}
	n, err := strconv.ParseUint(rest[:j], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return s[:i], n, true
}

// lane is one publisher's messages as one receiver (a subscriber, or a
// group of competing consumers) must see them: every confirmed message at
// least once, and a second time only flagged redelivered.
type lane struct {
	name string // "<publisher> -> <receiver>"

	mu        sync.Mutex
	confirmed map[uint64]struct{}
	got       map[uint64]struct{}
	dupes     uint64 // a message received again without the redelivered flag
	redeliv   uint64 // received again, flagged: allowed
	unknown   uint64 // received but never published by this run
	published uint64 // highest sequence handed out + 1 (for unknown)
}

func newLane(name string) *lane {
	return &lane{name: name, confirmed: make(map[uint64]struct{}), got: make(map[uint64]struct{})}
}

func (l *lane) sent(seq uint64) {
	l.mu.Lock()
	l.published = max(l.published, seq+1)
	l.mu.Unlock()
}

func (l *lane) confirm(seq uint64) {
	l.mu.Lock()
	l.confirmed[seq] = struct{}{}
	l.mu.Unlock()
}

func (l *lane) receive(seq uint64, redelivered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq >= l.published {
		l.unknown++
		return
	}
	if _, seen := l.got[seq]; seen {
		if redelivered {
			l.redeliv++
		} else {
			l.dupes++
		}
		return
	}
	l.got[seq] = struct{}{}
}

// missing counts confirmed messages not received (yet).
func (l *lane) missing() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n uint64
	for seq := range l.confirmed {
		if _, ok := l.got[seq]; !ok {
			n++
		}
	}
	return n
}

// LaneResult is one lane's account at the end of a soak.
type LaneResult struct {
	Lane        string `json:"lane"`
	Confirmed   uint64 `json:"confirmed"`
	Received    uint64 `json:"received"` // distinct messages
	Lost        uint64 `json:"lost"`     // confirmed, never received
	Duplicates  uint64 `json:"duplicates"`
	Redelivered uint64 `json:"redelivered"` // received again, flagged
}

func (l *lane) result() LaneResult {
	lost := l.missing()
	l.mu.Lock()
	defer l.mu.Unlock()
	return LaneResult{Lane: l.name, Confirmed: uint64(len(l.confirmed)), Received: uint64(len(l.got)),
		Lost: lost, Duplicates: l.dupes + l.unknown, Redelivered: l.redeliv}
}

// soakReceiver is what a consumer feeds: its lanes by publisher name.
type soakReceiver struct {
	name  string
	lanes map[string]*lane
	mu    sync.Mutex // guards lanes (publishers register while it runs)
}

func newSoakReceiver(name string) *soakReceiver {
	return &soakReceiver{name: name, lanes: make(map[string]*lane)}
}

// laneFor returns (creating) the lane of publisher pub at this receiver.
func (r *soakReceiver) laneFor(pub string) *lane {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.lanes[pub]
	if !ok {
		l = newLane(pub + " -> " + r.name)
		r.lanes[pub] = l
	}
	return l
}

// observe accounts one delivered body; it reports false for a body that
// is not a soak message.
func (r *soakReceiver) observe(body []byte, redelivered bool) bool {
	pub, seq, ok := parseSoakBody(body)
	if !ok {
		return false
	}
	r.mu.Lock()
	l := r.lanes[pub]
	r.mu.Unlock()
	if l == nil {
		return false
	}
	l.receive(seq, redelivered)
	return true
}
