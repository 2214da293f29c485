package mqtt

import (
	"bufio"
	"time"
	"unicode/utf8"

	"sync"

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
func (s *sink) Deliver(d broker.Delivery) bool { return s.c.out.pushDelivery(d, s) }

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

// inflight is an outbound QoS 1/2 PUBLISH awaiting PUBACK/PUBREC.
type inflight struct {
	queue *broker.Queue // nil for retained messages (nothing to settle)
	id    uint64
}

// outboxMaxItems bounds deliveries waiting for the writer; beyond it a
// sink refuses and the queue keeps the message until Resume.
const outboxMaxItems = 1024

// outbox is the connection's bounded write queue plus the outbound
// delivery state (packet ids in flight, topic aliases).
type outbox struct {
	c    *conn
	wake chan struct{}

	mu       sync.Mutex // guards below
	items    []outItem
	closed   bool
	blocked  []*broker.Consumer
	inflight map[uint16]inflight
	nextID   uint16

	// Set before the writer starts; read-only afterwards.
	version   byte
	maxPacket int    // client's Maximum Packet Size, 0 = none
	aliasMax  uint16 // client's Topic Alias Maximum

	// Writer-owned.
	aliases map[string]uint16
}

func newOutbox(c *conn) *outbox {
	return &outbox{c: c, wake: make(chan struct{}, 1), inflight: make(map[uint16]inflight)}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// push queues a control packet; these are never refused (they answer the
// client's own requests).
func (o *outbox) push(p packet.Packet) { o.pushItem(outItem{pkt: p}) }

func (o *outbox) pushItem(it outItem) {
	o.mu.Lock()
	if !o.closed {
		o.items = append(o.items, it)
	}
	o.mu.Unlock()
	o.signal()
}

// pushClose queues a final packet (nil = none) after which the writer
// closes the socket.
func (o *outbox) pushClose(p packet.Packet) { o.pushItem(outItem{pkt: p, close: true}) }

func (o *outbox) pushDelivery(d broker.Delivery, s *sink) bool {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	if len(o.items) >= outboxMaxItems {
		o.blocked = append(o.blocked, d.Consumer)
		o.mu.Unlock()
		return false
	}
	o.items = append(o.items, outItem{d: d, sink: s})
	o.mu.Unlock()
	o.signal()
	return true
}

// close stops the writer once the queued items are written.
func (o *outbox) close() {
	o.pushItem(outItem{close: true})
}

// run is the writer goroutine: it drains the outbox in batches and flushes
// once per batch.
func (o *outbox) run() {
	w := bufio.NewWriterSize(o.c.nc, 16<<10)
	var batch []outItem
	for {
		<-o.wake
		o.mu.Lock()
		batch, o.items = o.items, batch[:0]
		blocked := o.blocked
		o.blocked = nil
		o.mu.Unlock()
		stop := false
		o.c.nc.SetWriteDeadline(time.Now().Add(o.c.h.cfg.WriteTimeout))
		for i, it := range batch {
			if stop {
				o.drop(it)
				continue
			}
			if err := o.write(w, it); err != nil {
				stop = true
			}
			if it.close {
				stop = true
			}
			batch[i] = outItem{}
		}
		if w.Flush() != nil {
			stop = true
		}
		for _, cons := range blocked {
			cons.Resume()
		}
		if stop {
			o.mu.Lock()
			o.closed = true
			rest := o.items
			o.items = nil
			o.mu.Unlock()
			for _, it := range rest {
				o.drop(it)
			}
			o.c.nc.Close()
			return
		}
	}
}

// drop gives an unwritten delivery back to its queue.
func (o *outbox) drop(it outItem) {
	if it.d.Message != nil && !it.d.Consumer.NoAck() {
		it.d.Queue.Requeue(it.d.ID)
	}
}

func (o *outbox) write(w *bufio.Writer, it outItem) error {
	switch {
	case it.pkt != nil:
		_, err := w.Write(it.pkt.Encode(nil, o.version))
		return err
	case it.d.Message != nil:
		return o.writeDelivery(w, it.d, it.sink)
	case it.retained != nil:
		return o.writeRetained(w, it)
	}
	return nil
}

// writeDelivery turns a queue delivery into a PUBLISH: it finds the
// session's subscriptions the topic matches (for QoS, No Local, Retain As
// Published, subscription ids and the '$' rule), settles what is not to be
// sent, and tracks QoS 1/2 in flight.
func (o *outbox) writeDelivery(w *bufio.Writer, d broker.Delivery, s *sink) error {
	m := d.Message
	now := time.Now()
	settle := func() {
		if !d.Consumer.NoAck() {
			d.Queue.Ack(d.ID)
		}
	}
	if _, expired, _ := remainingExpiry(m, now); expired {
		settle() // the core has no per-message TTL yet: drop expired here
		return nil
	}
	p := &packet.Publish{Payload: m.Body}
	var qos byte
	switch {
	case s.replyTopic != "":
		p.Topic = s.replyTopic
		qos = min(publishQoS(m), 1)
	case s.sub != nil:
		p.Topic = keyToTopic(m.RoutingKey)
		qos = min(publishQoS(m), s.sub.opts.QoS)
		if s.sub.id != 0 {
			p.Properties.SubscriptionIDs = []uint32{s.sub.id}
		}
	default:
		p.Topic = keyToTopic(m.RoutingKey)
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
			return nil
		}
		qos = min(publishQoS(m), best)
	}
	if o.version == packet.V5 {
		fillProperties(&p.Properties, m, now)
	}
	return o.send(w, p, qos, d.Redelivered, inflight{queue: d.Queue, id: d.ID}, settle)
}

func (o *outbox) writeRetained(w *bufio.Writer, it outItem) error {
	m := it.retained
	now := time.Now()
	if _, expired, _ := remainingExpiry(m, now); expired {
		return nil
	}
	p := &packet.Publish{Topic: it.topic, Payload: m.Body, Retain: true}
	if it.sub.id != 0 {
		p.Properties.SubscriptionIDs = []uint32{it.sub.id}
	}
	if o.version == packet.V5 {
		fillProperties(&p.Properties, m, now)
	}
	return o.send(w, p, min(publishQoS(m), it.sub.opts.QoS), false, inflight{}, func() {})
}

// send assigns a packet id (QoS > 0), applies the client's topic aliases
// and Maximum Packet Size, and writes p.
func (o *outbox) send(w *bufio.Writer, p *packet.Publish, qos byte, dup bool, fl inflight, settle func()) error {
	p.QoS = qos
	if qos > 0 {
		p.Dup = dup
		o.mu.Lock()
		for range 65536 {
			o.nextID++
			if o.nextID == 0 {
				o.nextID = 1
			}
			if _, used := o.inflight[o.nextID]; !used {
				break
			}
		}
		id := o.nextID
		_, full := o.inflight[id]
		if !full {
			o.inflight[id] = fl
		}
		o.mu.Unlock()
		if full {
			settle() // cannot happen within the receive window; drop
			return nil
		}
		p.PacketID = id
	}
	if o.version == packet.V5 && o.aliasMax > 0 {
		if a, ok := o.aliases[p.Topic]; ok {
			p.Properties.TopicAlias, p.Topic = a, ""
		} else if len(o.aliases) < int(o.aliasMax) {
			if o.aliases == nil {
				o.aliases = make(map[string]uint16)
			}
			a := uint16(len(o.aliases) + 1)
			o.aliases[p.Topic] = a
			p.Properties.TopicAlias = a
		}
	}
	buf := p.Encode(nil, o.version)
	if o.maxPacket > 0 && len(buf) > o.maxPacket {
		// [MQTT-3.1.2-25]: never send more than the client accepts; the
		// message is discarded as if delivered.
		if qos > 0 {
			o.mu.Lock()
			delete(o.inflight, p.PacketID)
			o.mu.Unlock()
		}
		settle()
		return nil
	}
	_, err := w.Write(buf)
	if qos == 0 {
		settle()
	}
	return err
}

// settle handles PUBACK/PUBREC/PUBCOMP for an outbound packet id.
func (o *outbox) settle(id uint16) {
	o.mu.Lock()
	fl, ok := o.inflight[id]
	delete(o.inflight, id)
	o.mu.Unlock()
	if ok && fl.queue != nil {
		fl.queue.Ack(fl.id)
	}
}

// requeueAll returns every unsettled delivery to its queue (the connection
// is gone); they come back flagged redelivered, sent with DUP.
func (o *outbox) requeueAll() {
	o.mu.Lock()
	fl := o.inflight
	o.inflight = make(map[uint16]inflight)
	o.mu.Unlock()
	byQueue := make(map[*broker.Queue][]uint64)
	for _, f := range fl {
		if f.queue != nil {
			byQueue[f.queue] = append(byQueue[f.queue], f.id)
		}
	}
	for q, ids := range byQueue {
		q.Requeue(ids...)
	}
}

// requeueQueue returns the unsettled deliveries of one queue (an
// unsubscribed shared subscription).
func (o *outbox) requeueQueue(q *broker.Queue) {
	o.mu.Lock()
	var ids []uint64
	for pid, f := range o.inflight {
		if f.queue == q {
			ids = append(ids, f.id)
			delete(o.inflight, pid)
		}
	}
	o.mu.Unlock()
	q.Requeue(ids...)
}

func validUTF8(b []byte) bool { return utf8.Valid(b) }
