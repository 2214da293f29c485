package broker

import (
	"hash/fnv"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

// Persistence: a persistent message (delivery mode 2) routed to a durable
// queue is written to the log once (a Message record) and referenced by
// each durable queue it lands in (an Enqueue record, appended under that
// queue's lock so that it precedes any Ack of the same entry). A publisher
// confirm waits for a barrier append, i.e. until everything before it is
// fsynced; many publishers share one fsync (the log's group commit).

func noop(error) {}

// queueID is a durable queue's identity in the log: stable across restarts
// because it derives from the vhost and the name.
func queueID(vhost, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(vhost))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return h.Sum64() | 1 // never 0
}

// storeLocked appends records for q under its lock.
func (q *classicQueue) storeLocked(recs ...store.Record) {
	q.vhost.broker.store.AppendFunc(recs, noop)
}

// forgetLocked records that a stored entry left the queue for good (acked,
// expired, dropped, dead-lettered: a dead letter is a new message).
func (q *classicQueue) forgetLocked(e *entry) {
	if e.storeID != 0 && (q.persistent || e.transient) {
		q.storeLocked(store.Record{Kind: store.KindAck, QueueID: q.logQueueID(e), MessageID: e.storeID})
	}
}

// dropLocked removes a dead entry for good: forgotten by the log and
// dead-lettered if the queue says so.
func (q *classicQueue) dropLocked(e *entry, reason string) {
	if q.rpc != nil && reason == reasonExpired {
		q.rpc.expired()
	}
	if e.msg == nil && q.cfg.hasDLX {
		// Paged: the dead letter reads it back from the log, so the log
		// must keep it until then; publishDeadLetters logs the ack after.
		q.deadLetters = append(q.deadLetters, deadLetter{storeID: e.storeID, ackQueue: q.logQueueID(e), reason: reason, queue: q.name, dlx: q.cfg.dlx, dlrk: q.cfg.dlrk, hasDLRK: q.cfg.hasDLRK})
		return
	}
	q.forgetLocked(e)
	if e.msg != nil {
		q.deadLetterLocked(e.msg, reason)
	}
}

// forgetAllReadyLocked logs the removal of every ready stored entry (purge).
func (q *classicQueue) forgetAllReadyLocked() {
	if !q.persistent && !q.tpaged {
		return
	}
	var recs []store.Record
	add := func(e *entry) {
		if !e.dead && e.storeID != 0 && (q.persistent || e.transient) {
			recs = append(recs, store.Record{Kind: store.KindAck, QueueID: q.logQueueID(e), MessageID: e.storeID})
		}
	}
	for i := range q.ready.levels {
		q.ready.levels[i].Each(add)
	}
	for i := range q.ready.requeued {
		add(&q.ready.requeued[i])
	}
	if len(recs) > 0 {
		q.storeLocked(recs...)
	}
}

// abandonStored settles a stored message that no queue took (a length
// limit refused it), so that the log does not keep it forever.
func (b *Broker) abandonStored(m *Message) {
	b.store.AppendFunc([]store.Record{
		{Kind: store.KindEnqueue, QueueID: 0, MessageID: m.storeID},
		{Kind: store.KindAck, QueueID: 0, MessageID: m.storeID},
	}, noop)
}

// markDeliveredLocked records a stored entry's first delivery, so that
// after a crash it comes back flagged redelivered.
func (q *classicQueue) markDeliveredLocked(e *entry) {
	if q.persistent && e.storeID != 0 && !e.transient && !e.redelivered && e.deliveries == 1 {
		q.storeLocked(store.Record{Kind: store.KindRedelivered, QueueID: q.qid, MessageID: e.storeID})
	}
}

// prepareStore gives m a log identity and writes its Message record if it
// is persistent and one of qs is durable. It reports whether it did.
func (b *Broker) prepareStore(m *Message, qs []*Queue) bool {
	if b.store == nil || !m.Persistent() {
		return false
	}
	for _, q := range qs {
		if q.logged {
			m.storeID = b.nextMsgID.Add(1)
			b.store.AppendFunc([]store.Record{{Kind: store.KindMessage, MessageID: m.storeID, Meta: encodeMeta(m), Body: m.Body}}, noop)
			return true
		}
	}
	return false
}

// RecoverMessages rebuilds the durable queues' contents from the log, in
// their original order; call it once after the definitions are restored
// and before clients connect. After a crash (uncleanShutdown), every
// message comes back flagged redelivered: its first delivery, or its ack,
// may not have reached the disk, so a consumer must be able to tell it
// might be a duplicate (RabbitMQ does the same).
func (b *Broker) RecoverMessages(uncleanShutdown bool) (queues, messages int, err error) {
	if b.store == nil {
		return 0, 0, nil
	}
	start := b.now()
	byID := map[uint64]recoverable{}
	for _, v := range b.VHosts() {
		for _, q := range v.Queues() {
			if r, ok := q.kind.(recoverable); ok && q.logged {
				byID[r.logID()] = r
			}
		}
	}
	delayed := map[uint64]*Exchange{}
	for _, v := range b.VHosts() {
		for _, e := range v.Exchanges() {
			if e.kind == KindDelayed && e.durable {
				delayed[e.delayQueueID()] = e
			}
		}
	}
	keyed := b.recoverableKeyedStores()
	cache := map[uint64]*Message{} // a message fanned out to several queues is loaded once
	reader := newSequentialReader(b.store)
	var orphans []store.Record
	for qid, entries := range b.store.Recovered() {
		if e := delayed[qid]; e != nil {
			now := b.steadyNano()
			for _, en := range entries {
				meta, body, rerr := b.store.ReadMessage(en.MessageID)
				m := &Message{Body: body}
				if rerr == nil {
					rerr = decodeMeta(meta, m)
				}
				if rerr != nil {
					b.log.Warn("stored delayed message unreadable; skipped", "exchange", e.name, "message_id", en.MessageID, "err", rerr)
					continue
				}
				e.hold(m, int64(en.Seq), en.MessageID, now) // overdue ones go out at once
				messages++
			}
			continue
		}
		if s := keyed[qid]; s != nil {
			messages += s.restore(entries)
			continue
		}
		q := byID[qid]
		if q == nil {
			// The queue is gone (deleted, or its definition lost): drop its entries.
			orphans = append(orphans, store.Record{Kind: store.KindQueueDelete, QueueID: qid})
			continue
		}
		queues++
		for _, e := range entries {
			// A message the queue will page out is placed from its
			// metadata alone: its body stays on disk until it nears the head.
			m, size := cache[e.MessageID], 0
			if m != nil {
				size = len(m.Body)
			} else {
				var meta, body []byte
				var rerr error
				if q.restorePages() {
					meta, size, rerr = reader.ReadMeta(e.MessageID)
				} else {
					meta, body, rerr = reader.ReadMessage(e.MessageID)
					size = len(body)
				}
				if rerr != nil {
					b.log.Warn("stored message unreadable; skipped", "queue", q.Name(), "message_id", e.MessageID, "err", rerr)
					continue
				}
				m = &Message{Body: body, storeID: e.MessageID}
				if derr := decodeMeta(meta, m); derr != nil {
					b.log.Warn("stored message metadata unreadable; skipped", "queue", q.Name(), "message_id", e.MessageID, "err", derr)
					continue
				}
				if body != nil {
					cache[e.MessageID] = m // a fan-out's other queues share it
				}
			}
			q.restore(m, size, e.Redelivered || uncleanShutdown, e.Seq)
			messages++
		}
	}
	if len(orphans) > 0 {
		b.store.AppendFunc(orphans, noop)
	}
	b.log.Info("messages recovered", "queues", queues, "messages", messages, "took", b.now().Sub(start).Round(time.Millisecond))
	return queues, messages, nil
}

// recoverable is a kind whose messages live in the broker's log under one
// queue id, reloaded by RecoverMessages.
type recoverable interface {
	logID() uint64
	Name() string
	restorePages() bool
	restore(m *Message, size int, redelivered bool, storeSeq uint64)
}

func (q *classicQueue) logID() uint64 { return q.qid }

// restorePages reports whether the next restored message will be paged out.
func (q *classicQueue) restorePages() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.overBudgetLocked()
}

// restore appends a recovered message to the queue without logging it again.
// A message without its body (see restorePages) is paged out at once.
func (q *classicQueue) restore(m *Message, size int, redelivered bool, storeSeq uint64) {
	exp := int64(-1)
	if m.Properties.Expiration != "" {
		exp, _ = parseExpiration(m.Properties.Expiration)
	}
	q.mu.Lock()
	q.nextSeq++
	q.storeSeq = max(q.storeSeq, storeSeq)
	e := entry{seq: q.nextSeq, msg: m, prio: q.priorityOf(m), redelivered: redelivered, size: int32(size), storeID: m.storeID}
	if redelivered {
		e.deliveries = 1
	}
	if q.cfg.messageTTL >= 0 || exp >= 0 {
		e.expiresAt = expiryTime(q.now(), q.cfg.messageTTL, exp)
		e.ownExpiry = exp >= 0
	}
	if q.shouldPageLocked(&e) || (m.Body == nil && size > 0) {
		e.msg = nil // read back when it nears the head
	}
	q.ready.push(e)
	if e.expiresAt != 0 {
		q.trackExpiryLocked(e)
	}
	q.mu.Unlock()
}
