package broker

import (
	"maps"
	"slices"
	"time"

	"github.com/heraldmq/herald/internal/store"
)

// Reasons a message is dead-lettered, as RabbitMQ writes them in x-death.
const (
	reasonRejected      = "rejected"
	reasonExpired       = "expired"
	reasonMaxLen        = "maxlen"
	reasonDeliveryLimit = "delivery_limit"
)

// deadLetter is a message leaving a queue for its dead-letter exchange,
// collected under the queue's lock and published after it is released.
type deadLetter struct {
	msg      *Message
	storeID  uint64 // a paged message: read it back from the log first,
	ackQueue uint64 // then log its ack in this queue
	reason   string
	queue    string
	dlx      string
	dlrk     string
	hasDLRK  bool
}

// deadLetterLocked queues m for the dead-letter exchange, if the queue has
// one; otherwise the message is dropped.
func (q *classicQueue) deadLetterLocked(m *Message, reason string) {
	if !q.cfg.hasDLX {
		return
	}
	q.deadLetters = append(q.deadLetters, deadLetter{msg: m, reason: reason, queue: q.name, dlx: q.cfg.dlx, dlrk: q.cfg.dlrk, hasDLRK: q.cfg.hasDLRK})
}

// publishDeadLetters republishes dead letters to their exchanges with an
// updated x-death header. A message that would go round a cycle of
// dead-lettering with no rejection in it is dropped for that queue, as
// RabbitMQ does.
func (v *VHost) publishDeadLetters(dls []deadLetter) {
	p := v.Publisher()
	now := v.broker.now()
	for _, dl := range dls {
		if dl.msg == nil {
			m, err := v.broker.loadPaged(dl.storeID)
			v.broker.store.AppendFunc([]store.Record{{Kind: store.KindAck, QueueID: dl.ackQueue, MessageID: dl.storeID}}, noop)
			if err != nil {
				v.broker.log.Error("cannot read a paged message back to dead-letter it; dropped", "queue", dl.queue, "message_id", dl.storeID, "err", err)
				continue
			}
			dl.msg = m
		}
		m := deadLetterMessage(dl, now)
		qs, err := p.Route(m)
		if err != nil {
			v.broker.log.Warn("dead-letter exchange missing; message dropped", "queue", dl.queue, "vhost", v.name, "dead_letter_exchange", dl.dlx, "reason", dl.reason)
			continue
		}
		deaths, _ := m.Properties.Headers["x-death"].([]any)
		targets := slices.DeleteFunc(slices.Clone(qs), func(q *Queue) bool {
			if isDeadLetterCycle(deaths, q.name) {
				v.broker.log.Debug("dead-letter cycle detected; message dropped", "queue", q.name, "vhost", v.name)
				return true
			}
			return false
		})
		stored := v.broker.prepareStore(m, targets)
		anyStored := false
		for _, q := range targets {
			_, _, _, s := q.enqueue(m, -1) // expiration was moved into x-death
			anyStored = anyStored || s
		}
		if stored && !anyStored {
			v.broker.abandonStored(m)
		}
	}
}

// deadLetterMessage builds the republished copy: same body and properties,
// x-death updated, per-message expiration removed (it is kept in x-death as
// original-expiration so the message does not expire again).
func deadLetterMessage(dl deadLetter, now time.Time) *Message {
	orig := dl.msg
	m := &Message{Exchange: dl.dlx, RoutingKey: orig.RoutingKey, Properties: orig.Properties, Body: orig.Body}
	if dl.hasDLRK {
		m.RoutingKey = dl.dlrk
	}
	h := maps.Clone(orig.Properties.Headers)
	if h == nil {
		h = Table{}
	}
	deaths, _ := h["x-death"].([]any)
	deaths = slices.Clone(deaths)
	found := -1
	for i, d := range deaths {
		t, ok := d.(Table)
		if ok && t["queue"] == dl.queue && t["reason"] == dl.reason {
			found = i
			break
		}
	}
	if found >= 0 {
		t := maps.Clone(deaths[found].(Table))
		n, _ := asInt(t["count"])
		t["count"] = n + 1
		t["time"] = now.Truncate(time.Second)
		deaths = append(deaths[:found], deaths[found+1:]...)
		deaths = append([]any{t}, deaths...)
	} else {
		t := Table{
			"count":        int64(1),
			"reason":       dl.reason,
			"queue":        dl.queue,
			"time":         now.Truncate(time.Second),
			"exchange":     orig.Exchange,
			"routing-keys": []any{orig.RoutingKey},
		}
		if orig.Properties.Expiration != "" {
			t["original-expiration"] = orig.Properties.Expiration
		}
		deaths = append([]any{t}, deaths...)
	}
	h["x-death"] = deaths
	if _, ok := h["x-first-death-reason"]; !ok {
		h["x-first-death-reason"] = dl.reason
		h["x-first-death-queue"] = dl.queue
		h["x-first-death-exchange"] = orig.Exchange
	}
	h["x-last-death-reason"] = dl.reason
	h["x-last-death-queue"] = dl.queue
	h["x-last-death-exchange"] = orig.Exchange
	m.Properties.Headers = h
	m.Properties.Expiration = ""
	return m
}

// isDeadLetterCycle reports whether dead-lettering to queue closes a cycle
// made only of automatic deaths (expired, maxlen, delivery_limit): such a
// message would circulate forever. A rejection anywhere in the history
// means a client is in the loop, and RabbitMQ lets it through.
func isDeadLetterCycle(deaths []any, queue string) bool {
	seen := false
	for _, d := range deaths {
		t, ok := d.(Table)
		if !ok {
			continue
		}
		if t["reason"] == reasonRejected {
			return false
		}
		if t["queue"] == queue {
			seen = true
		}
	}
	return seen
}
