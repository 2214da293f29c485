package mqtt

import (
	"net"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// sink is a broker.Sink for one consumer of a connection: the session
// queue (sub == nil), a shared subscription's queue, or a reply queue.
type sink struct {
	c          *conn
	sub        *subscription // shared subscription this consumer serves
	replyTopic string        // reply queue: deliver on this topic
}

// Deliver runs under the queue's lock: it only queues d for the writer.
func (s *sink) Deliver(d broker.Delivery) bool {
	if !s.c.out().pushDelivery(d, s) {
		return false
	}
	s.c.reg.Load().CountDeliver(1)
	return true
}

// Cancelled: the queue was deleted under us (management action, session
// clean-up); the connection's other subscriptions go on.
func (s *sink) Cancelled(*broker.Consumer) {}

// outItem is one thing for the writer: a control packet, a queue delivery
// or a retained message for a new subscription.
type outItem struct {
	pkt      packet.Packet
	d        broker.Delivery
	sink     *sink
	retained *broker.Message
	topic    string        // retained: its topic
	sub      *subscription // retained: the subscription it is for
	close    bool          // close the socket after writing pkt (if any)
}

// outboxMaxItems bounds deliveries waiting for the writer; beyond it a
// sink refuses and the queue keeps the message until Resume.
const outboxMaxItems = 1024

// Write buffers: a batch is encoded into a pooled buffer that is written
// out every writeChunk bytes and at the end of the batch, then returned to
// the pool, so an idle connection holds none. Buffers that grew past
// writeBufKeep (a huge message) are left to the GC.
const (
	writeBufSize = 16 << 10
	writeChunk   = 64 << 10
	writeBufKeep = 256 << 10
)

// outbox is the connection's bounded write queue plus the outbound
// delivery state (packet ids in flight, topic aliases).
//
// The writer goroutine is not permanent: a push starts one when none is
// running, and it exits once it finds the outbox empty. Both decisions are
// taken under mu (running), so a push either lands in a batch the running
// writer will still take or starts a new writer: no wake-up is lost, and an
// idle connection costs no goroutine besides its reader. A delivery to a
// connection with nothing queued, no writer and no write in the last
// inlineGap is written by the dispatching goroutine itself, without
// blocking (deliverInline); the writer takes over what that leaves.
type outbox struct {
	c *conn

	mu      sync.Mutex // guards below
	items   []outItem
	ready   bool // CONNACK is written: writers may start
	running bool // a writer goroutine is on its way or running
	closed  bool
	blocked []*broker.Consumer
	// creditWait: retained QoS 1/2 messages waiting for room in the
	// client's Receive Maximum window (see writeRetained).
	creditWait []outItem
	// ids are the packet ids in use, indexed by id-1: PUBLISHes awaiting
	// PUBACK/PUBREC and QoS 2 ones awaiting PUBCOMP (see allocIDLocked).
	// It grows only when every slot is in use, so it stays within twice
	// the most ever in flight at once, which the in-flight window bounds;
	// a connection that never had any has none.
	ids     []inflight
	idsUsed int    // entries of ids not idFree
	nextID  uint16 // the id handed out last
	// resend: deliveries of the session's previous connection left
	// unacknowledged, by queue delivery, with the packet ids they had
	// (resendWith); usually nil.
	resend  map[resendKey]uint16
	batch   []outItem     // the writers' spare slice, reused across batches
	stopped chan struct{} // closed by the writer that closes the socket

	// Owned by the running writer (writers never overlap).
	aliases map[string]uint16
	buf     []byte // the pooled write buffer, only during a batch
	// The last routing key mapped to a topic: a subscriber mostly sees the
	// same few topics, and converting each delivery's key allocated.
	lastKey, lastTopic string
	// writeDeadline is the socket's write deadline as last set.
	writeDeadline time.Time
	// acks collects the batch's deliveries settled without a PUBACK (QoS 0,
	// expired, not matched) for one Ack per queue after the batch.
	acks ackBatch
	// Inline writes (deliverInline). raw is the socket of a plain TCP
	// connection (nil for TLS, WebSocket and others: no inline writes);
	// rawWrite is o.writeNow bound once, so a write allocates no closure.
	raw      syscall.RawConn
	rawWrite func(fd uintptr) bool
	rawN     int // bytes the last non-blocking write took
	// inline: writeDelivery runs for deliverInline (it may use the
	// Handler's pubCache).
	inline bool
	// retired: the connection dropped this outbox while it held nothing
	// (conn.retireOutbox); whoever still has it pushes to c.out() instead.
	retired bool
	// pend is the write buffer an inline write left unfinished (the
	// socket did not take it all) for the writer it starts: its bytes go
	// out first. werr: the inline write failed; that writer closes.
	pend *[]byte
	werr error
	// lastWrite is when the last batch or inline write started (set by the
	// writer; read under mu while none runs).
	lastWrite time.Time
}

// inlineGap: a delivery is written inline only if the connection's last
// write is at least this old. Sparse deliveries (a paced fanout) go out at
// once from the dispatching goroutine; dense ones (a flood) go to a writer
// goroutine, which batches them: inline writes cost one syscall each, and
// the publisher whose routing dispatches them would pay for all of them.
const inlineGap = time.Millisecond

func newOutbox(c *conn) *outbox {
	o := &outbox{c: c, stopped: make(chan struct{})}
	if tc, ok := c.nc.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			o.raw = rc
			o.rawWrite = o.writeNow
		}
	}
	return o
}

// startLocked starts a writer if there is work, the handshake is done and
// none is running. o.mu must be held.
func (o *outbox) startLocked() {
	if o.ready && !o.running && !o.closed && !o.retired && len(o.items) > 0 {
		o.running = true
		go o.run()
	}
}

// start lets writers run once CONNACK is written: deliveries queued by the
// consumers started during the handshake must not precede it.
func (o *outbox) start() {
	o.mu.Lock()
	o.ready = true
	o.startLocked()
	o.mu.Unlock()
}

// push queues a control packet; these are never refused (they answer the
// client's own requests).
func (o *outbox) push(p packet.Packet) { o.pushItem(outItem{pkt: p}) }

func (o *outbox) pushItem(it outItem) {
	o.mu.Lock()
	if o.retired {
		o.mu.Unlock()
		o.c.out().pushItem(it)
		return
	}
	if !o.closed {
		o.items = append(o.items, it)
		o.startLocked()
	}
	o.mu.Unlock()
}

// pushClose queues a final packet (nil = none) after which the writer
// closes the socket.
func (o *outbox) pushClose(p packet.Packet) { o.pushItem(outItem{pkt: p, close: true}) }

func (o *outbox) pushDelivery(d broker.Delivery, s *sink) bool {
	o.mu.Lock()
	if o.retired {
		o.mu.Unlock()
		return o.c.out().pushDelivery(d, s)
	}
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if len(o.items) >= outboxMaxItems {
		o.blocked = append(o.blocked, d.Consumer)
		o.mu.Unlock()
		return false
	}
	if o.raw != nil && o.ready && !o.running && len(o.items) == 0 {
		// Nothing queued and no writer: this goroutine may be the writer,
		// unless the connection was written to a moment ago (a flood:
		// a writer goroutine batches it into fewer, bigger writes).
		if now := time.Now(); now.Sub(o.lastWrite) >= inlineGap {
			o.running = true
			o.lastWrite = now
			o.mu.Unlock()
			o.deliverInline(d, s, now)
			return true
		}
	}
	o.items = append(o.items, outItem{d: d, sink: s})
	o.startLocked()
	o.mu.Unlock()
	return true
}

// deliverInline writes a delivery from the goroutine dispatching it (a
// publisher's read loop, an acknowledging subscriber's), as the writer:
// it runs only when the outbox is empty and no writer runs (running is
// set). It runs under the queue's lock, so it never blocks: it encodes the
// PUBLISH and tries one non-blocking write. What it cannot finish there
// (bytes the socket did not take, settlements, which call into queues,
// items pushed meanwhile) it leaves to a writer goroutine it starts. A
// connection that keeps up with its deliveries thus gets them written
// without a goroutine started and scheduled for each.
func (o *outbox) deliverInline(d broker.Delivery, s *sink, now time.Time) {
	// The socket's write deadline is renewed here too: past it the
	// non-blocking write fails unwritten, and a broadcast to subscribers
	// that only ever get inline writes would hand every one of them to a
	// writer goroutine once per deadline (45 s by default).
	o.extendWriteDeadline(now)
	bp := o.c.h.writeBufs.Get().(*[]byte)
	o.buf = (*bp)[:0]
	o.inline = true
	o.writeDelivery(d, s)
	o.inline = false
	if len(o.buf) > 0 {
		o.rawN = 0
		// An error without a write (an expired write deadline, a closing
		// socket) leaves the bytes to the writer, which sees for itself.
		if o.raw.Write(o.rawWrite) == nil {
			n := copy(o.buf, o.buf[o.rawN:])
			o.buf = o.buf[:n]
		}
	}
	if len(o.acks.pending) > 0 {
		// QoS 0 and dropped deliveries: settled by the Handler's acker,
		// outside this queue lock, without a writer of their own.
		o.c.h.acker.add(o, o.acks.pending)
		clear(o.acks.pending)
		o.acks.pending = o.acks.pending[:0]
	}
	handoff := len(o.buf) > 0 || o.werr != nil
	if handoff {
		*bp = o.buf
		o.pend = bp
	} else if cap(o.buf) <= writeBufKeep {
		*bp = o.buf[:0]
		o.c.h.writeBufs.Put(bp)
	}
	o.buf = nil
	o.mu.Lock()
	if handoff || len(o.items) > 0 {
		go o.run()
	} else {
		o.running = false
	}
	o.mu.Unlock()
}

// writeNow is the non-blocking write of deliverInline (o.rawWrite).
func (o *outbox) writeNow(fd uintptr) bool {
	n, err := syscall.Write(int(fd), o.buf)
	switch err {
	case nil:
		o.rawN = n
	case syscall.EAGAIN, syscall.EINTR:
		// The socket buffer is full: the writer waits for room.
	default:
		o.werr = err // the writer closes the connection
	}
	return true
}

// extendWriteDeadline gives the batch about to be written the configured
// write timeout (between it and 1.5 times it): setting a deadline costs a
// runtime timer update, so it is renewed once half its slack is used, not
// for every batch.
// now is the current time.
func (o *outbox) extendWriteDeadline(now time.Time) {
	timeout := o.c.h.cfg.WriteTimeout
	if o.writeDeadline.Sub(now) < timeout {
		o.writeDeadline = now.Add(timeout + timeout/2)
		o.c.nc.SetWriteDeadline(o.writeDeadline)
	}
}

// topicOf maps a delivery's routing key to its MQTT topic. Writer only.
func (o *outbox) topicOf(key string) string {
	if key != o.lastKey {
		o.lastKey, o.lastTopic = key, keyToTopic(key)
	}
	return o.lastTopic
}

// retire drops the outbox from its connection if it holds nothing the
// connection needs: nothing queued or being written, no packet id in use,
// no topic alias assigned, no retained message waiting for window room.
// The next packet for the connection makes a new one (conn.out); pushes
// that still reach this one go there (see retired). It reports whether the
// outbox was retired.
func (o *outbox) retire() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.retired || o.running || o.closed || len(o.items) > 0 || len(o.blocked) > 0 || len(o.creditWait) > 0 ||
		o.idsUsed > 0 || o.resend != nil || len(o.aliases) > 0 || o.pend != nil || o.werr != nil {
		return false
	}
	o.retired = true
	// Under o.mu, so that a push that finds o retired finds outp moved on.
	o.c.outp.CompareAndSwap(o, nil)
	return true
}

// close stops the writer once the queued items are written and waits for
// the socket to be closed. Only after a successful handshake (ready).
func (o *outbox) close() {
	o.pushItem(outItem{close: true})
	<-o.stopped
}

// run is a writer goroutine: it drains the outbox in batches, writing each
// batch with as few syscalls as its size allows, and exits when the outbox
// is empty.
func (o *outbox) run() {
	for {
		o.mu.Lock()
		if len(o.items) == 0 && o.pend == nil && o.werr == nil && len(o.acks.pending) == 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		batch := o.items
		o.items, o.batch = o.batch[:0], nil
		blocked := o.blocked
		o.blocked = nil
		o.mu.Unlock()
		stop := o.writeBatch(batch)
		for _, cons := range blocked {
			cons.Resume()
		}
		clear(batch)
		o.mu.Lock()
		o.batch = batch[:0]
		if stop {
			o.closed = true
			o.running = false
			rest := o.items
			o.items = nil
			o.mu.Unlock()
			for _, it := range rest {
				o.drop(it)
			}
			o.c.nc.Close()
			o.c.wake() // a parked reader ends the connection
			close(o.stopped)
			return
		}
		o.mu.Unlock()
	}
}

// writeBatch writes items and reports whether the connection must close
// (a close item or a write error); items after that are dropped.
func (o *outbox) writeBatch(batch []outItem) (stop bool) {
	bp := o.pend
	if bp != nil {
		// What an inline write left: it goes out first.
		o.pend = nil
		o.buf = *bp
	} else {
		bp = o.c.h.writeBufs.Get().(*[]byte)
		o.buf = (*bp)[:0]
	}
	if o.werr != nil {
		stop = true
		o.buf = o.buf[:0]
	}
	o.lastWrite = time.Now()
	o.extendWriteDeadline(o.lastWrite)
	for _, it := range batch {
		if stop {
			o.drop(it)
			continue
		}
		o.write(it)
		if len(o.buf) >= writeChunk && o.flush() != nil {
			stop = true
		}
		if it.close {
			stop = true
		}
	}
	if o.flush() != nil {
		stop = true
	}
	if len(o.acks.pending) > 0 {
		o.acks.flush()
		if o.waitingCredit() {
			o.kickCredit()
		}
	}
	if cap(o.buf) <= writeBufKeep {
		*bp = o.buf[:0]
		o.c.h.writeBufs.Put(bp)
	}
	o.buf = nil
	return stop
}

// flush writes the encoded packets out.
func (o *outbox) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	_, err := o.c.nc.Write(o.buf)
	o.buf = o.buf[:0]
	return err
}

// drop gives an unwritten delivery back to its queue.
func (o *outbox) drop(it outItem) {
	if it.d.Message != nil && !it.d.Consumer.NoAck() {
		it.d.Queue.Requeue(it.d.ID)
	}
}

// write encodes one item into the write buffer.
func (o *outbox) write(it outItem) {
	switch {
	case it.pkt != nil:
		o.buf = it.pkt.Encode(o.buf, o.c.version)
	case it.d.Message != nil:
		o.writeDelivery(it.d, it.sink)
	case it.retained != nil:
		o.writeRetained(it)
	}
}

// writeDelivery turns a queue delivery into a PUBLISH: it finds the
// session's subscriptions the topic matches (for QoS, No Local, Retain As
// Published, subscription ids and the '$' rule), settles what is not to be
// sent, and tracks QoS 1/2 in flight.
func (o *outbox) writeDelivery(d broker.Delivery, s *sink) {
	m := d.Message
	now := time.Now()
	fl := inflight{queue: d.Queue, id: d.ID}
	if d.Consumer.NoAck() {
		fl = inflight{} // nothing to settle
	}
	settle := func() { o.acks.add(fl) }
	if _, expired, _ := remainingExpiry(m, now); expired {
		settle() // the core has no per-message TTL yet: drop expired here
		return
	}
	p := &packet.Publish{Payload: m.Body}
	var qos byte
	switch {
	case s.replyTopic != "":
		p.Topic = s.replyTopic
		qos = min(publishQoS(m), 1)
	case s.sub != nil:
		p.Topic = o.topicOf(m.RoutingKey)
		qos = min(publishQoS(m), s.sub.opts.QoS)
		if s.sub.id != 0 {
			p.Properties.SubscriptionIDs = []uint32{s.sub.id}
		}
	default:
		p.Topic = o.topicOf(m.RoutingKey)
		publisher, _ := m.Properties.Headers[hdrPublisher].(string)
		retain, _ := m.Properties.Headers[hdrRetain].(bool)
		matched := false
		var best byte
		sess := o.c.sess
		sess.mu.Lock()
		for _, sub := range sess.subs {
			if sub.group != "" || !matchFilter(sub.filter, p.Topic) {
				continue
			}
			if sub.opts.NoLocal && publisher == o.c.clientID {
				continue // [MQTT-3.8.3-3]
			}
			matched = true
			best = max(best, sub.opts.QoS)
			if sub.opts.RetainAsPublished && retain {
				p.Retain = true
			}
			if sub.id != 0 {
				p.Properties.SubscriptionIDs = append(p.Properties.SubscriptionIDs, sub.id)
			}
		}
		sess.mu.Unlock()
		if !matched {
			settle()
			return
		}
		qos = min(publishQoS(m), best)
	}
	if o.inline && qos == 0 && len(p.Properties.SubscriptionIDs) == 0 && (o.c.version != packet.V5 || o.c.aliasMax == 0 && m.Properties.Expiration == "") {
		// The same bytes for every subscriber of a broadcast (pubcache.go):
		// the expiry is left out above because its seconds left change.
		// Only inline writes use the cache: they are the sparse deliveries
		// of a broadcast, one message to every connection in turn; a
		// writer goroutine's batch (a flood) has many messages, which
		// writers of different connections take in step, so the one-entry
		// cache would miss, allocating an encoding each time.
		if o.c.version == packet.V5 {
			fillProperties(&p.Properties, m, now)
		}
		o.sendShared(o.c.h.pubs.encode(m, p, o.c.version), fl)
		return
	}
	if o.c.version == packet.V5 {
		fillProperties(&p.Properties, m, now)
	}
	o.send(p, qos, d.Redelivered, fl)
}

// sendShared writes a QoS 0 PUBLISH encoded once for all its subscribers
// (pubCache) and settles its delivery, as send does at QoS 0.
func (o *outbox) sendShared(b []byte, fl inflight) {
	if o.c.maxPacket == 0 || len(b) <= int(o.c.maxPacket) {
		o.buf = append(o.buf, b...)
	}
	o.acks.add(fl)
}

// writeRetained sends a retained message to a new subscription. At QoS 1/2
// it takes a unit of the connection's in-flight window (the limiter its
// queue consumers share), so that the client's Receive Maximum also holds
// for retained messages; without room it waits in creditWait, in order,
// until a PUBACK or a queue ack frees some (kickCredit).
func (o *outbox) writeRetained(it outItem) {
	m := it.retained
	now := time.Now()
	if _, expired, _ := remainingExpiry(m, now); expired {
		return
	}
	qos := min(publishQoS(m), it.sub.opts.QoS)
	fl := inflight{}
	if qos > 0 {
		if lim := o.c.limiter; lim != nil {
			o.mu.Lock()
			if len(o.creditWait) > 0 || !lim.TryAcquire() {
				o.creditWait = append(o.creditWait, it)
				o.mu.Unlock()
				return
			}
			o.mu.Unlock()
			fl.credit = true
		}
	}
	p := &packet.Publish{Topic: it.topic, Payload: m.Body, Retain: true}
	if it.sub.id != 0 {
		p.Properties.SubscriptionIDs = []uint32{it.sub.id}
	}
	if o.c.version == packet.V5 {
		fillProperties(&p.Properties, m, now)
	}
	o.send(p, qos, false, fl)
}

// kickCredit puts the retained messages waiting for window room back in
// the outbox, after something freed some; the writer tries again.
func (o *outbox) kickCredit() {
	o.mu.Lock()
	if len(o.creditWait) > 0 && !o.closed {
		o.items = append(o.items, o.creditWait...)
		o.creditWait = o.creditWait[:0]
		o.startLocked()
	}
	o.mu.Unlock()
}

// waitingCredit reports whether retained messages wait for window room.
func (o *outbox) waitingCredit() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.creditWait) > 0
}

// send assigns a packet id (QoS > 0), applies the client's topic aliases
// and Maximum Packet Size, and encodes p; fl is what settles the message
// (acknowledged at once at QoS 0, on PUBACK/PUBREC otherwise).
func (o *outbox) send(p *packet.Publish, qos byte, dup bool, fl inflight) {
	p.QoS = qos
	if qos > 0 {
		p.Dup = dup
		o.mu.Lock()
		var id uint16
		if dup && len(o.resend) > 0 && fl.queue != nil {
			id = o.resendIDLocked(fl)
		}
		if id == 0 {
			id = o.allocIDLocked(fl)
		}
		o.mu.Unlock()
		if id == 0 {
			o.acks.add(fl) // cannot happen within the receive window; drop
			o.releaseCredit(fl)
			return
		}
		p.PacketID = id
	}
	if o.c.version == packet.V5 && o.c.aliasMax > 0 {
		if a, ok := o.aliases[p.Topic]; ok {
			p.Properties.TopicAlias, p.Topic = a, ""
		} else if len(o.aliases) < int(o.c.aliasMax) {
			if o.aliases == nil {
				o.aliases = make(map[string]uint16)
			}
			a := uint16(len(o.aliases) + 1)
			o.aliases[p.Topic] = a
			p.Properties.TopicAlias = a
		}
	}
	start := len(o.buf)
	o.buf = p.Encode(o.buf, o.c.version)
	if o.c.maxPacket > 0 && len(o.buf)-start > int(o.c.maxPacket) {
		// [MQTT-3.1.2-25]: never send more than the client accepts; the
		// message is discarded as if delivered.
		o.buf = o.buf[:start]
		if qos > 0 {
			o.mu.Lock()
			o.freeLocked(o.entryLocked(p.PacketID))
			o.mu.Unlock()
		}
		o.acks.add(fl)
		o.releaseCredit(fl)
		return
	}
	if qos == 0 {
		o.acks.add(fl)
	}
}

func validUTF8(b []byte) bool { return utf8.Valid(b) }
