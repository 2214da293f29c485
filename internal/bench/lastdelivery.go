package bench

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
)

// lastDelivery measures a broadcast the way its audience sees it: for each
// message, the time from its publish until the LAST of its expected
// deliveries arrived (the slowest subscriber's latency), as opposed to the
// per-delivery latency the other figures give. The publisher arms a slot
// for each message; every receiver that gets it raises the slot's latest
// arrival and counts itself; the delivery that completes the count records
// latest-minus-sent. Slots are a ring indexed by sequence number, so a
// message still incomplete a whole ring later is forgotten (counted as
// incomplete). One producer only (the broadcast scenarios have one).
type lastDelivery struct {
	expected uint64 // deliveries per message
	slots    []lastSlot
	hist     phasedHistogram
	armed    atomic.Uint64 // messages armed in the window
	complete atomic.Uint64 // of them, those whose every delivery arrived
	stray    atomic.Uint64 // deliveries for a slot re-armed since (arrived more than a ring late)
}

// lastRing is the number of slots: at 100 msg/s a message may take 20
// minutes before its slot is reused.
const lastRing = 1 << 17

type lastSlot struct {
	seq    atomic.Uint64 // seq+1 of the message armed here; 0 = none
	sentAt atomic.Int64
	latest atomic.Int64 // latest arrival, unix nanos
	count  atomic.Uint64
	window atomic.Bool // sent in the measured window
}

func newLastDelivery(expected int) *lastDelivery {
	return &lastDelivery{expected: uint64(expected), slots: make([]lastSlot, lastRing)}
}

// arm is called by the publisher before it publishes seq at sentAt.
func (l *lastDelivery) arm(r *run, seq uint64, sentAt int64) {
	if l == nil {
		return
	}
	s := &l.slots[seq%lastRing]
	s.seq.Store(0) // receivers of the slot's previous message stop counting here
	s.count.Store(0)
	s.latest.Store(0)
	s.sentAt.Store(sentAt)
	inWindow := r.phaseOf(sentAt) == windowPhase
	s.window.Store(inWindow)
	if inWindow {
		l.armed.Add(1)
	}
	s.seq.Store(seq + 1)
}

// record is called by a receiver for each delivery of seq at now.
func (l *lastDelivery) record(r *run, seq uint64, now int64) {
	if l == nil {
		return
	}
	s := &l.slots[seq%lastRing]
	if s.seq.Load() != seq+1 {
		l.stray.Add(1)
		return
	}
	for {
		old := s.latest.Load()
		if now <= old || s.latest.CompareAndSwap(old, now) {
			break
		}
	}
	if s.count.Add(1) != l.expected {
		return
	}
	sent := s.sentAt.Load()
	l.hist.record(r, sent, s.latest.Load())
	if s.window.Load() {
		l.complete.Add(1)
	}
}

// LastDeliveryResult holds the broadcast figures: per message published in
// the window, publish to last delivery.
type LastDeliveryResult struct {
	Messages   uint64         `json:"messages"`   // published in the window
	Complete   uint64         `json:"complete"`   // of them, delivered to every subscriber
	Incomplete uint64         `json:"incomplete"` // some subscriber never got it (QoS 0 drop, disconnect)
	Stray      uint64         `json:"stray,omitempty"`
	Latency    LatencySummary `json:"latency"`
}

func (l *lastDelivery) result() *LastDeliveryResult {
	if l == nil {
		return nil
	}
	snap := NewSnapshot()
	snap.Add(&l.hist[windowPhase])
	res := &LastDeliveryResult{Messages: l.armed.Load(), Complete: l.complete.Load(), Stray: l.stray.Load(), Latency: snap.Summary()}
	res.Incomplete = res.Messages - min(res.Complete, res.Messages)
	return res
}

// writeLastDeliveryRow prints the broadcast line of the table.
func writeLastDeliveryRow(row func(label, format string, args ...any), ld *LastDeliveryResult) {
	if ld == nil {
		return
	}
	l := ld.Latency
	row("broadcast", "publish to last delivery: p50 %s  p99 %s  max %s   (%s of %s messages reached every subscriber)",
		FormatLatency(l.P50), FormatLatency(l.P99), FormatLatency(l.Max), FormatCount(ld.Complete), FormatCount(ld.Messages))
}

// ParseSourceAddrs parses --source-addrs: comma-separated IPv4 addresses or
// ranges "127.0.0.2-127.0.0.5" (the last octet varies). Each loopback
// source address has its own ~28,000 ephemeral ports towards one broker
// port, so tens of thousands of connections need a few.
func ParseSourceAddrs(s string) ([]string, error) {
	var out []string
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			if !validIPv4(part) {
				return nil, fmt.Errorf("--source-addrs: %q is not an IPv4 address", part)
			}
			out = append(out, part)
			continue
		}
		if !validIPv4(lo) || !validIPv4(hi) {
			return nil, fmt.Errorf("--source-addrs: %q is not a range of IPv4 addresses (a.b.c.x-a.b.c.y)", part)
		}
		i, j := strings.LastIndexByte(lo, '.'), strings.LastIndexByte(hi, '.')
		if lo[:i] != hi[:j] {
			return nil, fmt.Errorf("--source-addrs: %q: only the last octet may vary", part)
		}
		a, _ := strconv.Atoi(lo[i+1:])
		b, _ := strconv.Atoi(hi[j+1:])
		if a > b {
			return nil, fmt.Errorf("--source-addrs: %q is an empty range", part)
		}
		for k := a; k <= b; k++ {
			out = append(out, lo[:i+1]+strconv.Itoa(k))
		}
	}
	return out, nil
}

func validIPv4(s string) bool {
	f := strings.Split(s, ".")
	if len(f) != 4 {
		return false
	}
	for _, x := range f {
		n, err := strconv.Atoi(x)
		if err != nil || n < 0 || n > 255 || x == "" {
			return false
		}
	}
	return true
}

// dialer returns a dialer for the run's next connection: with
// --source-addrs it binds the connections to those addresses in turn.
func (r *run) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: setupConnectTimeout}
	if n := len(r.cfg.SourceAddrs); n > 0 {
		i := r.nextSource.Add(1) - 1
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(r.cfg.SourceAddrs[i%uint64(n)])}
	}
	return d
}
