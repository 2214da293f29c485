package kit

import (
	"container/heap"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// IdlePoller holds idle plain-TCP connections without a goroutine each.
//
// A connection's reader goroutine, once the connection has gone quiet
// (nothing buffered, nothing to read), parks it and exits; the poller
// watches every parked socket from one goroutine (epoll on Linux) and,
// when one becomes readable, its deadline passes or Wake is called, starts
// that connection's resume func in a fresh goroutine, which reads on where
// the old one stopped. An idle connection then costs its own structures
// and a few bytes here, not a goroutine stack (at least 2 KiB, more once a
// read loop has run deep).
//
// A socket stays in Go's own poller while it is in ours (Go's descriptor
// stays non-blocking); ours only tells when to start a reader again.
// Writes do not involve the poller: a handler writes to a parked
// connection as to any other.
//
// On systems without the poller (not Linux) NewParker returns nil and
// handlers keep a reader goroutine per connection.
type IdlePoller struct {
	log *slog.Logger

	mu      sync.Mutex // guards everything below
	ps      *pollSet   // made with the poller (nil once closed or if it failed)
	parked  map[uint64]*Parker
	byTime  deadlineHeap
	timer   *time.Timer // fires at byTime[0].deadline
	nextID  uint64
	closed  bool
	stopped chan struct{} // closed when the poll goroutine has ended
}

// NewIdlePoller returns a poller; its goroutine starts with the first Park.
// Its descriptors (an epoll set and an eventfd on Linux) are made here, so
// that a broker's open files do not grow when its first connection goes
// idle (a leak check comparing them before and after would count them).
// Close it once the connections that use it are gone.
func NewIdlePoller(log *slog.Logger) *IdlePoller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &IdlePoller{log: log, parked: make(map[uint64]*Parker)}
	if pollSupported {
		ps, err := newPollSet()
		if err != nil {
			log.Warn("idle poller unavailable; idle connections keep a goroutine", "err", err)
			p.closed = true
		} else {
			p.ps = ps
		}
	}
	return p
}

// Parker is one connection's place in an IdlePoller. Its methods are
// called by the connection's reader (NewParker, Park, Release) and by
// whoever closes the socket (Wake).
type Parker struct {
	p      *IdlePoller
	rc     syscall.RawConn
	resume func()

	// Guarded by p.mu.
	id       uint64 // non-zero while parked
	deadline time.Time
	index    int  // in p.byTime, -1 when it has no deadline there
	added    bool // the socket is in the poll set (disabled after a wake-up)
}

// NewParker returns the Parker of a plain socket, or nil when nc cannot be
// parked (TLS, WebSocket, a pipe, a system without the poller, a closed
// poller): then the caller reads with a goroutine, as before. resume is
// what the poller runs, in a new goroutine, to wake a parked connection.
func (p *IdlePoller) NewParker(nc net.Conn, resume func()) *Parker {
	if p == nil || !pollSupported {
		return nil
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	if _, isTCP := nc.(*net.TCPConn); !isTCP {
		if _, isUnix := nc.(*net.UnixConn); !isUnix {
			return nil
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &Parker{p: p, rc: rc, resume: resume, index: -1}
}

// Park registers the connection until its socket is readable, deadline
// passes (zero: no deadline) or Wake is called; then resume runs in a new
// goroutine. The caller's goroutine must exit right after a true return
// and touch the connection no more: resume may already be running.
// False means the connection could not be parked (the socket is closed,
// the poller is closed or failed): the caller reads as usual.
func (k *Parker) Park(deadline time.Time) bool {
	p := k.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || k.id != 0 {
		return false
	}
	if p.ps == nil {
		return false
	}
	if p.stopped == nil {
		p.stopped = make(chan struct{})
		go p.run(p.ps)
	}
	p.nextID++
	id := p.nextID
	var perr error
	// Control holds the descriptor open: a socket closed meanwhile fails
	// here instead of registering a descriptor number that another
	// connection may already reuse.
	err := k.rc.Control(func(fd uintptr) { perr = p.ps.arm(int(fd), id, k.added) })
	if err == nil && perr != nil {
		err = perr
	}
	if err != nil {
		return false
	}
	k.added = true
	k.id = id
	p.parked[id] = k
	if !deadline.IsZero() {
		k.deadline = deadline
		heap.Push(&p.byTime, k)
		if k.index == 0 {
			p.resetTimerLocked()
		}
	}
	return true
}

// Wake resumes the connection now if it is parked; otherwise it does
// nothing. Whoever closes a connection's socket from outside its reader
// calls Wake after the close: a closed socket leaves the poll set without
// an event, and the resumed reader finds it closed and ends.
func (k *Parker) Wake() {
	p := k.p
	p.mu.Lock()
	ok := p.unparkLocked(k)
	p.mu.Unlock()
	if ok {
		go k.resume()
	}
}

// Release takes the socket out of the poll set; the reader calls it before
// it closes the socket (the kernel would drop it on close too, but only
// once no other descriptor refers to the socket). Not while parked.
func (k *Parker) Release() {
	p := k.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !k.added || p.ps == nil || p.closed {
		return
	}
	k.added = false
	// Control fails once the socket is closed: then the kernel has already
	// dropped it, and the number may be another socket's by now.
	_ = k.rc.Control(func(fd uintptr) { p.ps.remove(int(fd)) })
}

// Parked is the number of connections parked now.
func (p *IdlePoller) Parked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// Close stops the poller: every parked connection is resumed (its reader
// then reads as usual) and later Parks return false.
func (p *IdlePoller) Close() { p.stop(true) }

// stop closes the poller; the poll goroutine itself calls it with wait
// false when polling fails.
func (p *IdlePoller) stop(wait bool) {
	p.mu.Lock()
	if p.closed && p.ps == nil {
		p.mu.Unlock()
		return
	}
	p.closed = true
	ps, stopped := p.ps, p.stopped
	p.ps = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	resume := make([]*Parker, 0, len(p.parked))
	for _, k := range p.parked {
		resume = append(resume, k)
	}
	for _, k := range resume {
		p.unparkLocked(k)
		k.added = false
	}
	p.mu.Unlock()
	if ps != nil {
		if wait && stopped != nil { // nil: nothing ever parked, no goroutine
			ps.interrupt()
			<-stopped
		}
		ps.close()
	}
	for _, k := range resume {
		go k.resume()
	}
}

// run is the poll goroutine: it waits for parked sockets to become
// readable and resumes their connections.
func (p *IdlePoller) run(ps *pollSet) {
	defer close(p.stopped)
	ids := make([]uint64, 0, pollBatch)
	for {
		var err error
		ids, err = ps.wait(ids[:0])
		if err != nil {
			p.log.Error("idle poller failed; parked connections are resumed", "err", err)
			p.stop(false)
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		var wake []*Parker
		for _, id := range ids {
			// An id no longer parked is a connection woken meanwhile
			// (Wake, deadline): its event is stale.
			if k := p.parked[id]; k != nil && p.unparkLocked(k) {
				wake = append(wake, k)
			}
		}
		p.mu.Unlock()
		for _, k := range wake {
			go k.resume()
		}
	}
}

// unparkLocked removes k from the parked set; it reports whether k was
// parked. The socket stays in the poll set, disabled (one-shot) until the
// next Park re-arms it. p.mu must be held.
func (p *IdlePoller) unparkLocked(k *Parker) bool {
	if k.id == 0 {
		return false
	}
	delete(p.parked, k.id)
	k.id = 0
	if k.index >= 0 {
		first := k.index == 0
		heap.Remove(&p.byTime, k.index)
		if first {
			p.resetTimerLocked()
		}
	}
	return true
}

// resetTimerLocked points the deadline timer at the earliest deadline.
func (p *IdlePoller) resetTimerLocked() {
	if len(p.byTime) == 0 {
		if p.timer != nil {
			p.timer.Stop()
		}
		return
	}
	d := time.Until(p.byTime[0].deadline)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
		return
	}
	p.timer.Reset(d)
}

// expire resumes the connections whose deadline has passed.
func (p *IdlePoller) expire() {
	now := time.Now()
	var wake []*Parker
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	for len(p.byTime) > 0 && !p.byTime[0].deadline.After(now) {
		k := p.byTime[0]
		p.unparkLocked(k)
		wake = append(wake, k)
	}
	p.resetTimerLocked()
	p.mu.Unlock()
	for _, k := range wake {
		go k.resume()
	}
}

// deadlineHeap orders parked connections by deadline (container/heap).
type deadlineHeap []*Parker

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *deadlineHeap) Push(x any) {
	k := x.(*Parker)
	k.index = len(*h)
	*h = append(*h, k)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	k := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	k.index = -1
	return k
}
