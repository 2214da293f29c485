package mqtt

import (
	"encoding/json"
	"strings"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Shared subscriptions ($share/group/filter) are one queue per group and
// filter, consumed by every member. A member with a persistent session
// makes the queue durable (not auto-delete), so what is published while
// every member is away waits for them, across a broker restart too, as
// long as one session has the subscription [MQTT-4.8.2]; it is deleted
// when the last such session unsubscribes or ends. Clean members alone
// use an auto-delete queue, gone with its last consumer. (A group whose
// queue a clean member created keeps it auto-delete.)

// sharedQueue finds or declares the queue of shared subscription s.
func (c *conn) sharedQueue(s *subscription) (*broker.Queue, error) {
	if q, err := c.vhost.Queue(s.queue); err == nil {
		return q, nil
	}
	return c.vhost.DeclareQueue(s.queue, broker.QueueOptions{Durable: c.persistent, AutoDelete: !c.persistent})
}

// sessionSharedQueues lists the shared-subscription queues of a session,
// from its state here or else its durable record.
func (h *Handler) sessionSharedQueues(v *broker.VHost, clientID string) []string {
	var out []string
	h.mu.Lock()
	sess := h.sessions[v.Name()+"\x00"+clientID]
	h.mu.Unlock()
	if sess != nil {
		sess.mu.Lock()
		for _, s := range sess.subs {
			if s.queue != "" {
				out = append(out, s.queue)
			}
		}
		sess.mu.Unlock()
		return out
	}
	if m := v.SessionState().Get(sessionRecordKey(clientID)); m != nil {
		out = append(out, recordSharedQueues(v.Name(), m.Body)...)
	}
	return out
}

// recordSharedQueues lists the shared-subscription queues in a session
// record.
func recordSharedQueues(vhost string, body []byte) []string {
	var r sessionRecord
	if json.Unmarshal(body, &r) != nil {
		return nil
	}
	var out []string
	for _, sr := range r.Subs {
		if s, _ := parseSubscription(packet.Subscription{Filter: sr.Filter}, 0, vhost); s != nil && s.queue != "" {
			out = append(out, s.queue)
		}
	}
	return out
}

// releaseShared deletes those of queues that are durable shared-
// subscription queues no session subscribes to any more. Call it after
// the session that had them forgot them.
func (h *Handler) releaseShared(v *broker.VHost, queues []string) {
	for _, name := range queues {
		q, err := v.Queue(name)
		if err != nil || !q.Durable() || h.sharedInUse(v, name) {
			continue
		}
		v.DeleteQueue(name, 0, false, false)
		h.log.Debug("mqtt shared subscription queue deleted: no session subscribes to it", "vhost", v.Name(), "queue", name)
	}
}

// sharedInUse reports whether a session of v (connected, or persistent and
// waiting for its client) has a subscription on the shared queue name.
func (h *Handler) sharedInUse(v *broker.VHost, name string) bool {
	prefix := v.Name() + "\x00"
	h.mu.Lock()
	var live []*session
	for k, s := range h.sessions {
		if strings.HasPrefix(k, prefix) {
			live = append(live, s)
		}
	}
	h.mu.Unlock()
	for _, sess := range live {
		sess.mu.Lock()
		for _, s := range sess.subs {
			if s.queue == name {
				sess.mu.Unlock()
				return true
			}
		}
		sess.mu.Unlock()
	}
	for _, km := range v.SessionState().Select(func(k string) bool { return strings.HasPrefix(k, sessionRecordPrefix) }) {
		for _, q := range recordSharedQueues(v.Name(), km.Message.Body) {
			if q == name {
				return true
			}
		}
	}
	return false
}
