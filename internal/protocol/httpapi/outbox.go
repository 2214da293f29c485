package httpapi

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/kit"
)

// outbox is the bounded buffer between the queues (which call Deliver with
// their lock held, from any goroutine) and the one goroutine that writes a
// WebSocket or an SSE stream. An SSE stream's writer waits on notify; a
// WebSocket has no writer while nothing is queued: the first item starts
// one (kick), which drains the outbox and ends (an idle socket keeps no
// goroutine, and a burst costs one start, not a wake per delivery).
// Deliveries beyond its bound are refused, so the queues keep them; the
// writer resumes the refused subscriptions once it has taken a batch out.
//
// Lock order: a queue's lock, then outbox.mu. Nothing here calls into a
// queue while holding mu.
type outbox struct {
	limit  int
	notify kit.Wake // items were added
	slow   kit.Wake // a private subscription was refused
	// ws, when set, is the /ws session whose kick replaces notify: it
	// starts the writer (called with mu held, at most once until the
	// writer goes idle); Deliver may hand a delivery to the server's
	// flushers instead (wsflush.go).
	ws *wsSession

	mu      sync.Mutex // guards everything below
	cond    *sync.Cond // signalled when control frames drain or the outbox closes
	items   []outItem
	msgs    int // deliveries in items
	ctrls   int // control frames in items
	closed  bool
	blocked []*sub
	nextTag uint64
	// pending holds every delivery not yet settled, by tag: the ones still
	// in items and the ones written and awaiting the client's ack.
	pending map[uint64]pendingDelivery
	// running: the writer started by kick has not gone idle yet.
	running bool
	// slowSeen: a private subscription was refused since the writer last
	// looked (kick mode's slow).
	slowSeen bool
	// spare is the kicked writer's item slice between bursts.
	spare []outItem
	// lastFlush is when (Unix ns) Deliver last queued the socket for the
	// server's flushers.
	lastFlush int64
}

type outItem struct {
	sub  *sub // nil for a control frame
	tag  uint64
	d    broker.Delivery
	ctrl []byte
}

type pendingDelivery struct {
	queue *broker.Queue
	id    uint64
	sub   *sub
}

func newOutbox(limit int) *outbox {
	o := &outbox{limit: limit, notify: kit.NewWake(), slow: kit.NewWake(), pending: make(map[uint64]pendingDelivery)}
	o.cond = sync.NewCond(&o.mu)
	return o
}

// newKickedOutbox returns the outbox of a /ws session, whose writer
// starts on demand (wsSession.kick).
func newKickedOutbox(limit int, ws *wsSession) *outbox {
	o := &outbox{limit: limit, ws: ws, pending: make(map[uint64]pendingDelivery)}
	o.cond = sync.NewCond(&o.mu)
	return o
}

// ring tells the writer that items are queued; mu is held.
func (o *outbox) ring() {
	if o.ws == nil {
		o.notify.Ring()
		return
	}
	if !o.running {
		o.running = true
		o.ws.kick()
	}
}

// ringSlow tells the writer to look for a slow subscription; mu is held.
func (o *outbox) ringSlow() {
	if o.ws == nil {
		o.slow.Ring()
		return
	}
	o.slowSeen = true
	o.ring()
}

// takeOrIdle is take for a kicked writer, which passes back the batch it
// wrote (cleared): when nothing is queued it marks the writer idle (the
// next item kicks a new one) and reports false. slow reports a refused
// private subscription since the last call.
func (o *outbox) takeOrIdle(used []outItem) (batch []outItem, slow, ok bool) {
	o.mu.Lock()
	if used != nil && cap(used) <= maxSpareItems {
		o.spare = used[:0]
	}
	if len(o.items) == 0 && !o.slowSeen {
		o.running = false
		o.mu.Unlock()
		return nil, false, false
	}
	slow, o.slowSeen = o.slowSeen, false
	spare := o.spare
	o.spare = nil
	o.mu.Unlock()
	return o.take(spare), slow, true
}

// maxControl bounds queued control frames; the reader waits beyond it, so
// a client that never reads cannot grow the outbox by sending requests.
const maxControl = 64

// control queues an encoded control frame, waiting while too many are
// queued. It reports false once the outbox is closed.
func (o *outbox) control(b []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.ctrls >= maxControl && !o.closed {
		o.cond.Wait()
	}
	if o.closed {
		return false
	}
	o.items = append(o.items, outItem{ctrl: b})
	o.ctrls++
	o.ring()
	return true
}

// controlNoWait queues a control frame from inside a queue callback,
// where waiting is not allowed; such frames are bounded by the number of
// subscriptions.
func (o *outbox) controlNoWait(b []byte) {
	o.mu.Lock()
	if !o.closed {
		o.items = append(o.items, outItem{ctrl: b})
		o.ring()
	}
	o.mu.Unlock()
}

// answer queues a publish's answer from the ConfirmQueue, maybe on the
// log's commit goroutine, where waiting is not allowed. It counts against
// maxControl: the read loop waits for room (waitControl) after it queues
// an answer, so a client that does not read cannot grow the outbox.
func (o *outbox) answer(b []byte) {
	o.mu.Lock()
	if !o.closed {
		o.items = append(o.items, outItem{ctrl: b})
		o.ctrls++
		o.ring()
	}
	o.mu.Unlock()
}

// waitControl waits while too many control frames are queued (or until
// the outbox closes).
func (o *outbox) waitControl() {
	o.mu.Lock()
	for o.ctrls >= maxControl && !o.closed {
		o.cond.Wait()
	}
	o.mu.Unlock()
}

// take removes everything queued and resumes the subscriptions that were
// refused meanwhile (outside the lock: Resume re-enters Deliver).
func (o *outbox) take(spare []outItem) []outItem {
	o.mu.Lock()
	batch := o.items
	o.items = spare[:0]
	o.msgs, o.ctrls = 0, 0
	blocked := o.blocked
	o.blocked = nil
	for _, s := range blocked {
		s.blocked = false
	}
	o.cond.Broadcast()
	o.mu.Unlock()
	for _, s := range blocked {
		if s.bc != nil {
			s.bc.Resume()
		}
	}
	return batch
}

// written settles a delivery of an auto-ack subscription once it is on
// the wire.
func (o *outbox) written(it *outItem) {
	if !it.sub.auto || it.sub.noAck {
		return
	}
	if o.ws != nil {
		// Kicked mode keeps no pending entry for auto-ack deliveries:
		// the item is the writer's alone once taken (see unwritten).
		it.d.Queue.Ack(it.d.ID)
		return
	}
	o.mu.Lock()
	_, ok := o.pending[it.tag]
	delete(o.pending, it.tag)
	o.mu.Unlock()
	if ok {
		it.d.Queue.Ack(it.d.ID)
	}
}

// settle removes a client-acknowledged delivery; ok is false for an
// unknown (or already settled) tag.
func (o *outbox) settle(tag uint64) (pendingDelivery, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[tag]
	if ok && p.sub.auto {
		return p, false // auto-ack deliveries are the writer's to settle
	}
	delete(o.pending, tag)
	return p, ok
}

// lookup finds an unsettled delivery without settling it (for touch).
func (o *outbox) lookup(tag uint64) (pendingDelivery, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.pending[tag]
	return p, ok && !p.sub.auto
}

// close refuses further deliveries and requeues every unsettled one (at
// least once: what the client did not acknowledge goes back). Cancel the
// consumers first, so that no Deliver races with the requeue.
func (o *outbox) close() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.closed = true
	pending := o.pending
	o.pending = map[uint64]pendingDelivery{}
	items := o.items
	o.items = nil
	o.cond.Broadcast()
	o.mu.Unlock()
	for _, p := range pending {
		p.queue.Requeue(p.id)
	}
	o.unwritten(items)
}

// unwritten requeues the auto-ack deliveries of items that will not be
// written (in kicked mode they have no pending entry; otherwise close
// requeues them from pending).
func (o *outbox) unwritten(items []outItem) {
	if o.ws == nil {
		return
	}
	for i := range items {
		if it := &items[i]; it.sub != nil && it.sub.auto && !it.sub.noAck {
			it.d.Queue.Requeue(it.d.ID)
		}
	}
}

// sub is one subscription of a WebSocket or SSE stream to a queue: the
// broker.Sink of its consumer.
type sub struct {
	o     *outbox
	id    string
	queue *broker.Queue
	bc    *broker.Consumer
	auto  bool // settle on write instead of on the client's ack
	// noAck: the consumer is no-ack (an auto subscription to a private
	// queue, which goes with the socket: what is not written would be
	// requeued into a queue about to be deleted), so a delivery needs no
	// settling and a flusher may write it (wsflush.go).
	noAck   bool
	args    broker.Table // consume arguments (a stream's start)
	private bool         // the queue is this subscription's own (exchange+key)
	// started opens the gate once bc is set and the "subscribed" answer is
	// queued, so that no delivery overtakes it.
	started atomic.Bool
	blocked bool // in o.blocked; guarded by o.mu
	// idJSON is id encoded as a JSON string (the /ws writer's, lazily).
	idJSON []byte
}

// Deliver runs under the queue's lock: it only queues d for the writer.
func (s *sub) Deliver(d broker.Delivery) bool {
	if !s.started.Load() {
		return false
	}
	o := s.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	if o.msgs >= o.limit {
		if !s.blocked {
			s.blocked = true
			o.blocked = append(o.blocked, s)
		}
		if s.private {
			o.ringSlow()
		}
		return false
	}
	o.nextTag++
	if !s.auto || o.ws == nil {
		o.pending[o.nextTag] = pendingDelivery{queue: d.Queue, id: d.ID, sub: s}
	}
	o.items = append(o.items, outItem{sub: s, tag: o.nextTag, d: d})
	o.msgs++
	if s.noAck && o.ws != nil && !o.running && len(o.items) == 1 {
		// Nothing else queued and no writer: the server's flushers write
		// it (wsflush.go), unless the socket was flushed a moment ago (a
		// flood is better batched by a writer of its own).
		if now := time.Now().UnixNano(); now-o.lastFlush >= int64(flushGap) {
			o.lastFlush = now
			o.running = true
			o.ws.writers.Add(1)
			o.ws.s.flushes.push(o.ws)
			return true
		}
	}
	o.ring()
	return true
}

// flushGap: a no-ack delivery goes to the flushers (Deliver) only if the
// socket's last went there at least this long ago. Sparse deliveries (a
// broadcast at a few messages a second) are written without a writer
// goroutine started and scheduled for each; dense ones go to the
// socket's writer, which batches them.
const flushGap = time.Millisecond

// Cancelled tells the client that the broker ended the subscription (its
// queue was deleted).
func (s *sub) Cancelled(*broker.Consumer) {
	s.o.controlNoWait(mustJSON(map[string]string{"op": "cancelled", "sub": s.id}))
}
