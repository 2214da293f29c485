package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The lookup service's statistics and the bounded table of requests that
// await their reply.

// ServiceStats are the live statistics of a service or one instance.
// Expired is counted per service only: a request that expires while
// queued was never given to an instance.
type ServiceStats struct {
	Requests uint64            // requests delivered
	Replies  map[string]uint64 // by x-rpc-status
	Expired  uint64            // requests that expired while queued
	// AvgMs and P99Ms are the time from the delivery of a request to its
	// reply: AvgMs over every reply, P99Ms over the last latencyWindow.
	AvgMs, P99Ms float64
}

// latencyWindow is how many recent reply times the p99 is taken over.
const latencyWindow = 1024

// callStats counts one service's or instance's traffic; guarded by the
// serviceQueue's lock.
type callStats struct {
	requests, expired uint64
	// replies counts by status. A slice searched in order, not a map: a
	// service answers with one or two statuses, and this runs for every
	// reply (hashing the status twice per reply cost more than the rest
	// of the bookkeeping).
	replies []statusCount
	replied uint64        // replies with a time
	total   time.Duration // their sum
	window  [latencyWindow]time.Duration
	next    int // where the next time goes in window (mod latencyWindow)
}

// maxStatuses bounds the distinct x-rpc-status values counted; the rest
// are counted as "OTHER" (a status is a gRPC code name, of which there
// are 17, but the header comes from clients).
const maxStatuses = 32

type statusCount struct {
	status string
	n      uint64
}

func (s *callStats) reply(status string, d time.Duration) {
	s.countStatus(status)
	if d < 0 {
		d = 0
	}
	s.replied++
	s.total += d
	s.window[s.next%latencyWindow] = d
	s.next++
}

// countStatus counts a reply with status; past maxStatuses distinct
// ones, new statuses count as "OTHER".
func (s *callStats) countStatus(status string) {
	for i := range s.replies {
		if s.replies[i].status == status {
			s.replies[i].n++
			return
		}
	}
	if len(s.replies) >= maxStatuses {
		status = "OTHER"
		for i := range s.replies {
			if s.replies[i].status == status {
				s.replies[i].n++
				return
			}
		}
	}
	s.replies = append(s.replies, statusCount{status, 1})
}

func (s *callStats) snapshot() ServiceStats {
	out := ServiceStats{Requests: s.requests, Expired: s.expired, Replies: make(map[string]uint64, len(s.replies))}
	for _, r := range s.replies {
		out.Replies[r.status] = r.n
	}
	if s.replied == 0 {
		return out
	}
	out.AvgMs = ms(s.total / time.Duration(s.replied))
	n := min(s.next, latencyWindow)
	w := slices.Clone(s.window[:n])
	slices.Sort(w)
	// The nearest-rank p99: the smallest time at least 99% are within.
	rank := (99*n + 99) / 100
	out.P99Ms = ms(w[rank-1])
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// replyKey identifies a request awaiting its reply: the reply goes to the
// default exchange with routing key reply_to and the request's
// correlation id, in the same virtual host.
type replyKey struct {
	vhost         *VHost
	replyTo, corr string
}

// pending is a delivered request awaiting its reply.
type pending struct {
	svc *serviceQueue
	in  *instance // nil if the consumer was not recorded
	at  int64     // delivered, unix nanoseconds
}

// Bounds of the reply table: a request whose reply never comes (its
// caller gave up, the instance died) is forgotten after maxPendingAge, or
// sooner once maxPending requests wait.
const (
	maxPending    = 1 << 16
	maxPendingAge = 10 * time.Minute // longer than any gateway deadline (5m)
)

// replyTable holds the requests awaiting their reply, in delivery order
// for eviction; the zero value is ready. Only RPC traffic touches it.
type replyTable struct {
	size atomic.Int64 // len(m), read without the lock by Publish's hook

	mu    sync.Mutex // guards m and order
	m     map[replyKey]pending
	order []orderEntry // delivery order; entries may be stale (answered)
	head  int          // order[:head] is consumed
}

type orderEntry struct {
	key replyKey
	at  int64
}

// expect remembers a delivered request (a redelivery replaces it).
func (t *replyTable) expect(k replyKey, p pending) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[replyKey]pending)
	}
	t.m[k] = p
	t.order = append(t.order, orderEntry{k, p.at})
	t.evictLocked(p.at)
	t.size.Store(int64(len(t.m)))
}

// evictLocked forgets requests too old or beyond maxPending, and keeps
// the order slice within a constant factor of the map.
func (t *replyTable) evictLocked(now int64) {
	for t.head < len(t.order) {
		o := t.order[t.head]
		p, ok := t.m[o.key]
		live := ok && p.at == o.at
		if live && now-o.at < int64(maxPendingAge) && len(t.m) <= maxPending {
			break
		}
		if live {
			delete(t.m, o.key)
		}
		t.order[t.head] = orderEntry{}
		t.head++
	}
	if t.head == len(t.order) {
		t.order, t.head = t.order[:0], 0
		return
	}
	if len(t.order)-t.head > 2*len(t.m)+64 {
		// Mostly answered requests behind an old one: compact.
		live := t.order[:0]
		for _, o := range t.order[t.head:] {
			if p, ok := t.m[o.key]; ok && p.at == o.at {
				live = append(live, o)
			}
		}
		clear(t.order[len(live):])
		t.order, t.head = live, 0
	}
}

// forget drops the request k awaits (its delivery did not happen).
func (t *replyTable) forget(k replyKey) {
	t.mu.Lock()
	if _, ok := t.m[k]; ok {
		delete(t.m, k)
		t.size.Store(int64(len(t.m)))
	}
	t.mu.Unlock()
}

// answer records the reply to k, if a request awaits it.
func (t *replyTable) answer(k replyKey, status string, now int64) {
	t.mu.Lock()
	p, ok := t.m[k]
	if ok {
		delete(t.m, k)
		t.size.Store(int64(len(t.m)))
	}
	t.mu.Unlock()
	if ok {
		p.svc.replied(p, status, now)
	}
}

// len is the number of requests awaiting a reply.
func (t *replyTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
