package mqtt

import (
	"github.com/heraldmq/herald/internal/broker"
)

// The outbound packet ids of a connection: a table indexed by id of the
// PUBLISHes awaiting PUBACK/PUBREC and the QoS 2 ones awaiting PUBCOMP,
// and how a session's ids carry over to its next connection.

// inflight is an outbound QoS 1/2 PUBLISH awaiting PUBACK/PUBREC, or a
// QoS 2 one awaiting PUBCOMP: what settles it, and, in the outbox's table
// of packet ids, the state of its id.
type inflight struct {
	// queue, id: the delivery to settle in its queue; queue is nil for
	// retained messages, no-ack deliveries and, after PUBREC, QoS 2 ones
	// (settled then).
	queue *broker.Queue
	id    uint64
	// credit: the entry holds a unit of the connection's in-flight window
	// (conn.limiter) of its own, returned by releaseCredit: a retained
	// message, and a QoS 2 message from PUBREC to PUBCOMP, which still
	// counts against the client's Receive Maximum [MQTT-4.9.0-2] after
	// its queue's Ack returned the delivery's unit. Queue deliveries hold
	// theirs until that Ack.
	credit bool
	state  idState
}

// idState is the state of an outbound packet id.
type idState uint8

const (
	idFree     idState = iota
	idSent             // PUBLISH sent: awaiting PUBACK (QoS 1) or PUBREC (QoS 2)
	idReleased         // QoS 2: PUBREC received, PUBREL sent: awaiting PUBCOMP
)

// maxPacketID is the highest packet id, and so the most in flight at once.
const maxPacketID = 65535

// releaseCredit returns an entry's own window unit (a retained message
// acknowledged or never sent, a QoS 2 flow completed).
func (o *outbox) releaseCredit(fl inflight) {
	if fl.credit {
		if lim := o.c.limiter; lim != nil {
			lim.Release(1)
		}
		o.kickCredit()
	}
}

// takeCredit takes a unit of the connection's window for an entry of its
// own, whatever the window's bound (see inflight.credit).
func (o *outbox) takeCredit() bool {
	lim := o.c.limiter
	if lim == nil {
		return false
	}
	lim.Take()
	return true
}

// allocIDLocked records fl as sent under a new packet id and returns the
// id, or 0 if all are in use. Ids are handed out in turn, from the one
// after the last, wrapping within the table; the table grows (doubling)
// only when every slot is in use. So ids stay low: a client acknowledging
// in order gets the same few back, and the table stays about as long as
// the most ever in flight at once. o.mu must be held.
func (o *outbox) allocIDLocked(fl inflight) uint16 {
	if o.idsUsed == len(o.ids) {
		if !o.growIDsLocked(len(o.ids) + 1) {
			return 0
		}
	}
	n := len(o.ids)
	id := int(o.nextID)
	for {
		if id++; id > n {
			id = 1
		}
		if o.ids[id-1].state == idFree {
			break
		}
	}
	fl.state = idSent
	o.useLocked(&o.ids[id-1], fl)
	o.nextID = uint16(id)
	return uint16(id)
}

// growIDsLocked makes the table hold at least need ids; false if need is
// beyond the highest packet id. The next id handed out is the first new
// one. o.mu must be held.
func (o *outbox) growIDsLocked(need int) bool {
	if need > maxPacketID {
		return false
	}
	if need <= len(o.ids) {
		return true
	}
	n := min(max(2*len(o.ids), 8, need), maxPacketID)
	o.nextID = uint16(len(o.ids))
	o.ids = append(o.ids, make([]inflight, n-len(o.ids))...)
	return true
}

// entryLocked is the entry of packet id, nil if id is beyond the table
// (or 0). o.mu must be held.
func (o *outbox) entryLocked(id uint16) *inflight {
	i := int(id) - 1
	if i < 0 || i >= len(o.ids) {
		return nil
	}
	return &o.ids[i]
}

// useLocked puts fl (not idFree) in the free entry e. o.mu must be held.
func (o *outbox) useLocked(e *inflight, fl inflight) {
	*e = fl
	o.idsUsed++
}

// freeLocked makes the id of e free. o.mu must be held.
func (o *outbox) freeLocked(e *inflight) {
	*e = inflight{}
	o.idsUsed--
}

// settle handles a PUBACK (or a v5 PUBREC with an error code, which ends
// the QoS 2 flow) for an outbound packet id: the id is free again and the
// delivery is added to acks (the read loop's batch, acknowledged in the
// queue when the read buffer drains). An id not awaiting PUBACK/PUBREC is
// ignored.
func (o *outbox) settle(id uint16, acks *ackBatch) {
	o.mu.Lock()
	e := o.entryLocked(id)
	if e == nil || e.state != idSent {
		o.mu.Unlock()
		return
	}
	fl := *e
	o.freeLocked(e)
	o.mu.Unlock()
	acks.add(fl)
	o.releaseCredit(fl)
}

// pubrecResult says what a PUBREC was for.
type pubrecResult uint8

const (
	pubrecUnknown  pubrecResult = iota // no PUBLISH in flight with that id
	pubrecReceived                     // a QoS 2 PUBLISH awaiting it: now released
	pubrecAgain                        // an id released already (a resent PUBREC)
)

// received handles a (successful) PUBREC: the id stays in use, awaiting
// PUBCOMP [MQTT-2.2.1-3], and keeps a unit of the in-flight window
// [MQTT-4.9.0-2]. It returns the delivery, which the caller settles in its
// queue now (the client has the message: it must not come again): for a
// queue delivery, whose unit that Ack returns, the entry takes a unit of
// its own first, so the window does not open in between.
func (o *outbox) received(id uint16) (inflight, pubrecResult) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e := o.entryLocked(id)
	switch {
	case e == nil || e.state == idFree:
		return inflight{}, pubrecUnknown
	case e.state == idReleased:
		return inflight{}, pubrecAgain
	}
	fl := *e
	credit := fl.credit
	if !credit && fl.queue != nil {
		credit = o.takeCredit()
	}
	*e = inflight{credit: credit, state: idReleased}
	return fl, pubrecReceived
}

// complete handles a PUBCOMP: a released id is free again and returns its
// window unit. Any other id is ignored; complete reports whether it was
// released.
func (o *outbox) complete(id uint16) bool {
	o.mu.Lock()
	e := o.entryLocked(id)
	if e == nil || e.state != idReleased {
		o.mu.Unlock()
		return false
	}
	fl := *e
	o.freeLocked(e)
	o.mu.Unlock()
	o.releaseCredit(fl)
	return true
}

// reserve marks ids as released, awaiting PUBCOMP, each with a unit of
// the window (a resumed session's QoS 2 flows, whose PUBREL the caller
// sends again): the ids are not handed out until their PUBCOMP, and the
// window counts them. Before the session's consumers start.
func (o *outbox) reserve(ids []uint16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, id := range ids {
		if id == 0 || !o.growIDsLocked(int(id)) {
			continue
		}
		if e := o.entryLocked(id); e.state == idFree {
			o.useLocked(e, inflight{credit: o.takeCredit(), state: idReleased})
		}
	}
	o.nextID = 0
}

// requeueAll returns every unsettled delivery to its queue (the connection
// is gone); they come back flagged redelivered, sent with DUP.
func (o *outbox) requeueAll() (sent map[resendKey]uint16) {
	o.mu.Lock()
	fl := o.ids
	o.ids, o.idsUsed, o.nextID = nil, 0, 0
	o.mu.Unlock()
	byQueue := make(map[*broker.Queue][]uint64)
	for i, f := range fl {
		if f.queue == nil {
			continue
		}
		byQueue[f.queue] = append(byQueue[f.queue], f.id)
		if f.state == idSent {
			if sent == nil {
				sent = make(map[resendKey]uint16)
			}
			sent[resendKey{f.queue, f.id}] = uint16(i + 1)
		}
	}
	for q, ids := range byQueue {
		q.Requeue(ids...)
	}
	return sent
}

// resendKey is a queue delivery, by its queue and delivery id (a requeued
// message keeps its delivery id).
type resendKey struct {
	queue *broker.Queue
	id    uint64
}

// resendWith makes the deliveries a previous connection of the session
// sent and did not get acknowledged go out again with their original
// packet ids [MQTT-4.4.0-1], as they come back from their queues (see
// send). New ids are handed out above them meanwhile. Before the
// session's consumers start.
func (o *outbox) resendWith(sent map[resendKey]uint16) {
	if len(sent) == 0 {
		return
	}
	o.mu.Lock()
	o.resend = sent
	for _, id := range sent {
		o.nextID = max(o.nextID, id)
	}
	o.mu.Unlock()
}

// resendIDLocked returns the original packet id of a redelivery (0 if it
// has none, or the id is taken), in use for fl. o.mu must be held.
func (o *outbox) resendIDLocked(fl inflight) uint16 {
	k := resendKey{fl.queue, fl.id}
	id, ok := o.resend[k]
	if !ok {
		return 0
	}
	delete(o.resend, k)
	if !o.growIDsLocked(int(id)) {
		return 0
	}
	e := o.entryLocked(id)
	if e.state != idFree {
		return 0
	}
	fl.state = idSent
	o.useLocked(e, fl)
	return id
}

// requeueQueue returns the unsettled deliveries of one queue (an
// unsubscribed shared subscription).
func (o *outbox) requeueQueue(q *broker.Queue) {
	o.mu.Lock()
	var ids []uint64
	for i := range o.ids {
		if e := &o.ids[i]; e.queue == q {
			ids = append(ids, e.id)
			o.freeLocked(e)
		}
	}
	o.mu.Unlock()
	q.Requeue(ids...)
}
