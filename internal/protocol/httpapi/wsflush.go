package httpapi

import (
	"sync"

	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// The /ws flushers write sparse broadcast deliveries. A broadcast to many
// sockets is enqueued by a few goroutines (the publisher's, the broker's
// fan-out workers) in every subscriber's private queue; each queue hands
// it to its socket's outbox (sub.Deliver). Starting a writer goroutine per
// socket for one small frame costs more than the frame's write; writing it
// right there, on the routing goroutine, makes the sockets wait for the
// writes before their own. Instead, a socket with nothing queued and
// no writer is put on the server's flush queue, and at most GOMAXPROCS
// goroutines (started when it fills, ending when it empties) write each
// queued socket's deliveries with one non-blocking write apiece
// (wsconn.Conn.TryWriteMessage): the routing goroutine only enqueues, the
// writes run in parallel with it and with each other, and no goroutine is
// started per delivery. A socket the flusher cannot finish (full, busy,
// over TLS, control frames or a burst queued) is handed to its own
// writer, which batches (wswriter.go).

// maxFlushItems: a socket with more queued than this gets its own writer,
// which writes them in one writev.
const maxFlushItems = 4

// flushQueue is the server's queue of sockets to flush.
type flushQueue struct {
	// max bounds the flush goroutines (GOMAXPROCS: a flusher never
	// blocks); set by Mount.
	max     int
	mu      sync.Mutex
	q       []*wsSession
	head    int
	running int
}

// push queues ws, whose writers count it already (outbox.Deliver), and
// starts a flusher if fewer than max run.
func (f *flushQueue) push(ws *wsSession) {
	f.mu.Lock()
	f.q = append(f.q, ws)
	start := f.running < f.max
	if start {
		f.running++
	}
	f.mu.Unlock()
	if start {
		go f.run()
	}
}

// run flushes queued sockets until none is left.
func (f *flushQueue) run() {
	for {
		f.mu.Lock()
		if f.head == len(f.q) {
			clear(f.q)
			f.q, f.head = f.q[:0], 0
			f.running--
			f.mu.Unlock()
			return
		}
		ws := f.q[f.head]
		f.q[f.head] = nil
		f.head++
		f.mu.Unlock()
		ws.flushQueued()
	}
}

// flushQueued writes what a socket queued for the flusher: no-ack
// deliveries, each in one non-blocking write, in order; from the first it
// cannot write on, its own writer takes over.
func (ws *wsSession) flushQueued() {
	defer ws.writers.Done()
	o := ws.ob
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return // close dropped the items; no-ack ones need no settling
	}
	n := 0
	if len(o.items) <= maxFlushItems {
		for n < len(o.items) {
			it := &o.items[n]
			if it.sub == nil || !it.sub.noAck || !ws.writeNow(it) {
				break
			}
			n++
		}
	}
	rest := copy(o.items, o.items[n:])
	clear(o.items[rest:])
	o.items = o.items[:rest]
	o.msgs -= n
	if rest == 0 && !o.slowSeen && len(o.blocked) == 0 {
		o.running = false
		return
	}
	ws.kick() // running stays set: the writer is the socket's now
}

// writeNow writes a no-ack delivery in one non-blocking write of its
// frame (wsconn.Conn.TryWriteMessage), the broadcast's shared JSON from
// the encoding cache. It reports false when it did not write (the socket
// is busy, closing, not plain TCP, or the frame is large).
func (ws *wsSession) writeNow(it *outItem) bool {
	if ws.closing.Load() {
		return false
	}
	var pre [128]byte
	_, p := ws.encodeItem(pre[:0], it)
	if len(p.prefix)+len(p.shared) > maxInlineFrame {
		return false
	}
	ok, err := ws.c.TryWriteMessage(wsconn.OpText, p.prefix, p.shared)
	if !ok {
		return false
	}
	ws.reg.CountDeliver(1)
	if err != nil {
		// The write closed the socket; the reader ends the session.
		ws.closing.Store(true)
		go ws.unpark()
	}
	return true
}
