package mqtt

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// State that outlives a broker restart. The core keeps it durably per
// vhost (broker.KeyedStore, persisted through the message log):
//
//   - retained messages, in VHost.Retained(), keyed by topic;
//   - one record per persistent session, in VHost.SessionState(), keyed
//     "mqtt/<client id>": the session expiry interval, when the client
//     went away, and every subscription with its options (QoS, No Local,
//     Retain As Published, Retain Handling, subscription identifier, the
//     filter as subscribed, $share group included), and the packet ids of
//     QoS 2 flows in progress both ways (see sessionRecord).
//
// The session queue and its bindings on amq.topic are durable definitions
// as before; the record adds what MQTT needs at delivery. A record is
// written when a persistent session starts or resumes, on each SUBSCRIBE
// and UNSUBSCRIBE (the SUBACK/UNSUBACK waits until it is on disk), when a
// QoS 2 flow starts or ends (inbound: a PUBLISH routed, its PUBREL;
// outbound: a PUBREC, its PUBCOMP) and when the client goes away; it is
// deleted with the session.

const sessionRecordPrefix = "mqtt/"

// sessionRecord is the stored form of a persistent session.
type sessionRecord struct {
	ClientID string `json:"client_id"`
	// Expiry is the session expiry interval in seconds; -1 = never (3.1.1
	// clean session 0, v5 0xFFFFFFFF).
	Expiry int64 `json:"expiry"`
	// Disconnected is when the client went away (Unix milliseconds); 0
	// while it is connected, so after a crash the expiry counts from the
	// next start.
	Disconnected int64       `json:"disconnected,omitempty"`
	Subs         []subRecord `json:"subscriptions,omitempty"`
	// AwaitingPubrel are the packet ids of inbound QoS 2 publishes that
	// were routed and answered with PUBREC but not yet released: a resent
	// PUBLISH with one of them after a restart is not routed twice.
	AwaitingPubrel []uint16 `json:"awaiting_pubrel,omitempty"`
	// AwaitingPubcomp are the packet ids of outbound QoS 2 messages the
	// client received (PUBREC: settled in their queue) and that were
	// released with PUBREL but not completed, in the order of their
	// PUBRECs: the resumed session sends PUBREL for them again, first, and
	// keeps the ids in use until PUBCOMP. Written before the PUBREL is
	// sent, and on disk (with the queue's ack) before it goes out.
	AwaitingPubcomp []uint16 `json:"awaiting_pubcomp,omitempty"`
}

type subRecord struct {
	Filter            string `json:"filter"` // as subscribed, $share/group/ included
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	ID                uint32 `json:"id,omitempty"`
}

func sessionRecordKey(clientID string) string { return sessionRecordPrefix + clientID }

// saveSession writes the session's record (persistent sessions only);
// disconnected is zero while the client is connected. With wait it
// returns once the record is on disk (or done is closed).
func (c *conn) saveSession(disconnected time.Time, wait bool, done <-chan struct{}) {
	if c.queue == nil || !c.queue.Durable() {
		return
	}
	r := sessionRecord{ClientID: c.clientID, Expiry: -1}
	switch {
	case c.deleteQueue:
		r.Expiry = 0 // the session ends with this connection
	case c.expiry >= 0:
		r.Expiry = int64(c.expiry / time.Second)
	}
	if !disconnected.IsZero() {
		r.Disconnected = disconnected.UnixMilli()
	}
	c.sess.mu.Lock()
	for _, s := range c.sess.subs {
		r.Subs = append(r.Subs, subRecord{Filter: s.full, QoS: s.opts.QoS, NoLocal: s.opts.NoLocal,
			RetainAsPublished: s.opts.RetainAsPublished, RetainHandling: s.opts.RetainHandling, ID: s.id})
	}
	for id := range c.sess.qos2 {
		r.AwaitingPubrel = append(r.AwaitingPubrel, id)
	}
	r.AwaitingPubcomp = slices.Clone(c.sess.pubcomp)
	c.sess.mu.Unlock()
	slices.Sort(r.AwaitingPubrel)
	body, err := json.Marshal(&r)
	if err != nil {
		c.logger().Error("mqtt session record", "err", err)
		return
	}
	st := c.vhost.SessionState()
	st.Set(sessionRecordKey(c.clientID), &broker.Message{Body: body, Properties: broker.Properties{ContentType: "application/json"}})
	if wait {
		if err := st.Sync(done); err != nil {
			c.logger().Warn("mqtt session record not on disk", "err", err)
		}
	}
}

func loadSessionRecord(v *broker.VHost, clientID string) (*sessionRecord, bool) {
	m := v.SessionState().Get(sessionRecordKey(clientID))
	if m == nil {
		return nil, false
	}
	var r sessionRecord
	if err := json.Unmarshal(m.Body, &r); err != nil {
		return nil, false
	}
	return &r, true
}

// loadSession rebuilds a persistent session's state after a restart: from
// its record, or, for a session without one (written by an older Herald),
// from the session queue's bindings on amq.topic, at QoS 1 with default
// options. The bindings are made to match the record (a crash between a
// binding and its record, or a binding removed by an operator).
func (c *conn) loadSession() *session {
	s := &session{subs: make(map[string]*subscription), qos2: make(map[uint16]struct{})}
	r, ok := loadSessionRecord(c.vhost, c.clientID)
	if !ok {
		if x, err := c.vhost.Exchange(topicExchange); err == nil {
			for _, b := range x.Bindings() {
				if b.DestinationKind != "queue" || b.Destination != c.queue.Name() {
					continue
				}
				f := keyToTopic(b.RoutingKey)
				if sub, code := parseSubscription(packet.Subscription{Filter: f, QoS: 1}, 0, c.vhost.Name()); code == packet.Success {
					s.subs[f] = sub
				}
			}
		}
		return s
	}
	for _, id := range r.AwaitingPubrel {
		s.qos2[id] = struct{}{}
	}
	for _, id := range r.AwaitingPubcomp {
		if id != 0 && !slices.Contains(s.pubcomp, id) {
			s.pubcomp = append(s.pubcomp, id)
		}
	}
	for _, sr := range r.Subs {
		o := packet.Subscription{Filter: sr.Filter, QoS: min(sr.QoS, 2), NoLocal: sr.NoLocal,
			RetainAsPublished: sr.RetainAsPublished, RetainHandling: sr.RetainHandling}
		sub, code := parseSubscription(o, sr.ID, c.vhost.Name())
		if code != packet.Success {
			continue
		}
		s.subs[sub.full] = sub
		if sub.group == "" {
			if err := c.vhost.BindQueue(c.queue.Name(), topicExchange, sub.key, nil, c.owner); err != nil {
				c.logger().Warn("mqtt session restore: bind failed", "filter", sub.full, "err", err)
			}
		}
	}
	return s
}

// RestoreSessions applies the session expiry of persistent sessions
// after a restart: a session whose expiry interval passed while the broker
// was down (or that ended with its connection) is deleted now, the others
// get their expiry timer for the time left; records whose session queue is
// gone are dropped. Call it once, after the broker recovered its
// definitions and messages and before clients connect.
func (h *Handler) RestoreSessions() {
	now := time.Now()
	for _, v := range h.broker.VHosts() {
		st := v.SessionState()
		recs := st.Select(func(k string) bool { return strings.HasPrefix(k, sessionRecordPrefix) })
		for _, km := range recs {
			var r sessionRecord
			if err := json.Unmarshal(km.Message.Body, &r); err != nil || r.ClientID == "" {
				h.log.Warn("mqtt session record unreadable; dropped", "vhost", v.Name(), "key", km.Key, "err", err)
				st.Delete(km.Key)
				continue
			}
			queue := sessionQueueName(r.ClientID, true)
			if _, err := v.Queue(queue); err != nil {
				st.Delete(km.Key)
				continue
			}
			if r.Expiry < 0 {
				continue
			}
			from := now
			if r.Disconnected > 0 {
				from = time.UnixMilli(r.Disconnected)
			}
			left := from.Add(time.Duration(r.Expiry) * time.Second).Sub(now)
			key := v.Name() + "\x00" + r.ClientID
			if left <= 0 {
				v.DeleteQueue(queue, 0, false, false)
				h.dropSession(v, r.ClientID)
				h.log.Info("mqtt session expired while the broker was down", "vhost", v.Name(), "client_id", r.ClientID)
				continue
			}
			h.expireLater(key, v, r.ClientID, left)
		}
	}
}
