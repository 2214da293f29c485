package mqtt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// session is the state of a client session that outlives a connection of a
// persistent session: its subscriptions (the bindings live in the core, the
// options MQTT needs at delivery live here and, for a persistent session,
// in its durable record: see persist.go), the QoS 2 packet ids it
// published and has not released yet, and those of the QoS 2 messages
// delivered to it that await PUBCOMP.
type session struct {
	mu   sync.Mutex // guards below; taken by the read loop and the writer
	subs map[string]*subscription
	qos2 map[uint16]struct{}
	// pubcomp: outbound QoS 2 packet ids released (PUBREC received, PUBREL
	// sent) and not completed yet, in the order of their PUBRECs: sent
	// PUBREL again, in that order, when the session resumes
	// [MQTT-4.4.0-1, MQTT-4.6.0-3]. Usually empty (nil).
	pubcomp []uint16
	// resend: the deliveries the last connection left unacknowledged, with
	// their packet ids, for the next one (outbox.resendWith).
	resend map[resendKey]uint16
}

func newSession() *session {
	return &session{}
}

// setSub records a subscription; the map is made by the first one, so a
// session without subscriptions holds none. s.mu must be held.
func (s *session) setSub(sub *subscription) {
	if s.subs == nil {
		s.subs = make(map[string]*subscription)
	}
	s.subs[sub.full] = sub
}

// subscription is one topic filter of a session.
type subscription struct {
	full   string // as subscribed, with any $share/group/ prefix
	filter string
	key    string // binding pattern on amq.topic
	group  string // shared subscription group, "" if not shared
	queue  string // the shared queue, for shared subscriptions
	opts   packet.Subscription
	id     uint32 // v5 subscription identifier, 0 = none
}

func sessionQueueName(clientID string, persistent bool) string {
	if persistent {
		return "mqtt-subscription-" + clientID + "qos1"
	}
	return "mqtt-subscription-" + clientID + "qos0"
}

// openSession finds or creates the session queue and starts consuming it.
// It reports whether a previous session was resumed (CONNACK session present).
func (c *conn) openSession(cleanStart bool) (bool, error) {
	durableName := sessionQueueName(c.clientID, true)
	old, _ := c.vhost.Queue(durableName)
	if old != nil && cleanStart {
		// [MQTT-3.1.2-6] / v5 Clean Start: discard the previous session.
		c.vhost.DeleteQueue(durableName, 0, false, false)
		c.h.dropSession(c.vhost, c.clientID)
		old = nil
	}
	present := false
	var err error
	switch {
	case old != nil:
		c.queue, present = old, true
		c.deleteQueue = !c.persistent
	case c.persistent:
		c.h.dropSession(c.vhost, c.clientID)
		c.queue, err = c.vhost.DeclareQueue(durableName, broker.QueueOptions{Durable: true})
	default:
		// A clean session's queue is declared by its first SUBSCRIBE
		// (ensureQueue): a connection that only publishes, or waits
		// before subscribing, holds no queue.
		c.h.dropSession(c.vhost, c.clientID)
	}
	if err != nil {
		return false, err
	}
	// The subscriptions' options must be known before the first delivery.
	c.sess = c.h.session(c, present)
	// QoS 2 deliveries released before the client went away (or the
	// broker restarted): PUBREL again with their ids, before anything
	// else; the ids stay in use until PUBCOMP.
	c.resumePubrels()
	c.sess.mu.Lock()
	resend := c.sess.resend
	c.sess.resend = nil
	c.sess.mu.Unlock()
	if len(resend) > 0 {
		c.out().resendWith(resend) // else no outbox yet (see out)
	}
	// The record says the client is here, with this connection's expiry.
	c.saveSession(time.Time{}, false, nil)
	if c.queue != nil {
		if err := c.consume(c.queue, "", &sink{c: c}); err != nil {
			return false, err
		}
	}
	// Shared subscriptions of a resumed session: their queues may have gone
	// with their last consumer, so declare, bind and consume them again.
	c.sess.mu.Lock()
	var shared []*subscription
	for _, s := range c.sess.subs {
		if s.group != "" {
			shared = append(shared, s)
		}
	}
	c.sess.mu.Unlock()
	for _, s := range shared {
		if err := c.startShared(s); err != nil {
			return false, err
		}
	}
	return present, nil
}

// ensureQueue declares a clean session's queue and consumes from it, on
// the first subscription that needs it. Read loop only.
func (c *conn) ensureQueue() error {
	if c.queue != nil {
		return nil
	}
	q, err := c.vhost.DeclareQueue(sessionQueueName(c.clientID, false),
		broker.QueueOptions{Exclusive: true, Owner: c.owner})
	if err != nil {
		return err
	}
	if err := c.consume(q, "", &sink{c: c}); err != nil {
		c.vhost.DeleteQueue(q.Name(), 0, false, false)
		return err
	}
	c.queue = q
	return nil
}

// sessionQueueName is the name of the session's queue, declared or not.
func (c *conn) sessionQueueName() string {
	if c.queue != nil {
		return c.queue.Name()
	}
	return sessionQueueName(c.clientID, false)
}

func (c *conn) consume(q *broker.Queue, tag string, s *sink) error {
	cons, err := q.Consume(broker.ConsumerOptions{Tag: tag, Owner: c.owner, Limiter: c.limiter, Sink: s})
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.consumers == nil {
		c.consumers = make(map[string]*broker.Consumer)
	}
	c.consumers[tag] = cons
	c.mu.Unlock()
	return nil
}

func (c *conn) startShared(s *subscription) error {
	q, err := c.sharedQueue(s)
	if err != nil {
		return err
	}
	if err := c.vhost.BindQueue(s.queue, topicExchange, s.key, nil, c.owner); err != nil {
		return err
	}
	return c.consume(q, s.full, &sink{c: c, sub: s})
}

func (c *conn) handleSubscribe(p *packet.Subscribe) error {
	ack := &packet.Suback{Kind: packet.SUBACK, PacketID: p.PacketID}
	var subID uint32
	if ids := p.Properties.SubscriptionIDs; len(ids) > 0 {
		subID = ids[0]
	}
	var retained []outItem
	for _, o := range p.Subscriptions {
		code, items := c.subscribe(o, subID)
		ack.Reasons = append(ack.Reasons, code)
		retained = append(retained, items...)
	}
	if c.version != packet.V5 {
		for i, r := range ack.Reasons {
			if r.Failed() {
				ack.Reasons[i] = packet.UnspecifiedError // 3.1.1 knows only 0x80
			}
		}
	}
	// A persistent session's subscriptions are on disk before the SUBACK.
	c.saveSession(time.Time{}, true, c.done)
	// SUBACK first, then the retained messages [MQTT-3.3.1-6].
	c.out().push(ack)
	for _, it := range retained {
		c.out().pushItem(it)
	}
	return nil
}

// parseSubscription checks a filter and works out its binding: key,
// $share group and the shared queue.
func parseSubscription(o packet.Subscription, subID uint32, vhost string) (*subscription, packet.ReasonCode) {
	s := &subscription{full: o.Filter, filter: o.Filter, opts: o, id: subID}
	group, filter, shared := parseShare(o.Filter)
	if shared {
		s.group, s.filter = group, filter
	} else if strings.HasPrefix(o.Filter, sharePrefix) {
		return nil, packet.TopicFilterInvalid
	}
	if !packet.ValidTopicFilter(s.filter) {
		return nil, packet.TopicFilterInvalid
	}
	if shared && o.NoLocal {
		return nil, packet.ProtocolError // [MQTT-3.8.3-4]
	}
	s.key = topicToKey(s.filter)
	if shared {
		s.queue = "mqtt-shared-" + vhost + "-" + s.group + "-" + s.key
	}
	return s, packet.Success
}

// subscribe adds one filter; it returns the SUBACK reason code and the
// retained messages to send.
func (c *conn) subscribe(o packet.Subscription, subID uint32) (packet.ReasonCode, []outItem) {
	s, code := parseSubscription(o, subID, c.vhost.Name())
	if s == nil {
		return code, nil
	}
	shared := s.group != ""
	c.sess.mu.Lock()
	prev := c.sess.subs[s.full]
	c.sess.mu.Unlock()
	bindQueue := c.sessionQueueName()
	if shared {
		bindQueue = s.queue
	}
	err := c.allowSubscribe(bindQueue, s.key)
	if err == nil && shared {
		err = c.allowQueue(bindQueue)
	}
	if err != nil {
		// v5 SUBACK 0x87; handleSubscribe turns it into 0x80 for 3.1.1.
		c.logger().Info("mqtt subscribe refused", "filter", o.Filter, "err", err)
		return packet.NotAuthorized, nil
	}
	if shared {
		if prev == nil {
			if err := c.startShared(s); err != nil {
				c.logger().Warn("mqtt shared subscribe failed", "filter", o.Filter, "err", err)
				return packet.UnspecifiedError, nil
			}
		}
		c.sess.mu.Lock()
		c.sess.setSub(s)
		c.sess.mu.Unlock()
	} else {
		if err := c.ensureQueue(); err != nil {
			c.logger().Warn("mqtt subscribe failed", "filter", o.Filter, "err", err)
			return packet.UnspecifiedError, nil
		}
		// The subscription is recorded before its binding exists: a
		// message routed to the session queue as soon as the binding is
		// made may be delivered at once (before the SUBACK, as the spec
		// allows), and the delivery looks its filter up here; without it
		// the message would be settled as matching nothing and lost.
		c.sess.mu.Lock()
		c.sess.setSub(s)
		c.sess.mu.Unlock()
		if err := c.vhost.BindQueue(c.queue.Name(), topicExchange, s.key, nil, c.owner); err != nil {
			c.sess.mu.Lock()
			if prev != nil {
				c.sess.subs[s.full] = prev
			} else {
				delete(c.sess.subs, s.full)
			}
			c.sess.mu.Unlock()
			c.logger().Warn("mqtt subscribe failed", "filter", o.Filter, "err", err)
			if errors.Is(err, broker.ErrAccessRefused) {
				return packet.NotAuthorized, nil
			}
			return packet.UnspecifiedError, nil
		}
	}

	// Retained messages: not for shared subscriptions; v5 Retain Handling
	// 1 sends them only for a new subscription, 2 never [MQTT-3.3.1-9..11].
	var items []outItem
	if !shared && (o.RetainHandling == 0 || (o.RetainHandling == 1 && prev == nil)) {
		for _, r := range c.h.retainedFor(c.vhost, s.filter) {
			items = append(items, outItem{retained: r.msg, topic: r.topic, sub: s})
		}
	}
	return packet.ReasonCode(o.QoS), items
}

func (c *conn) handleUnsubscribe(p *packet.Unsubscribe) {
	ack := &packet.Suback{Kind: packet.UNSUBACK, PacketID: p.PacketID}
	var unshared []string
	for _, f := range p.Filters {
		c.sess.mu.Lock()
		s := c.sess.subs[f]
		delete(c.sess.subs, f)
		inUse := false
		if s != nil && s.group == "" {
			for _, o := range c.sess.subs {
				inUse = inUse || (o.group == "" && o.key == s.key)
			}
		}
		c.sess.mu.Unlock()
		switch {
		case s == nil:
			ack.Reasons = append(ack.Reasons, packet.NoSubscriptionExisted)
			continue
		case s.group != "":
			c.mu.Lock()
			cons := c.consumers[s.full]
			delete(c.consumers, s.full)
			c.mu.Unlock()
			if cons != nil {
				cons.Cancel()
				c.out().requeueQueue(cons.Queue())
			}
			unshared = append(unshared, s.queue)
		case !inUse:
			c.vhost.UnbindQueue(c.queue.Name(), topicExchange, s.key, nil, c.owner)
		}
		ack.Reasons = append(ack.Reasons, packet.Success)
	}
	c.saveSession(time.Time{}, true, c.done)
	c.h.releaseShared(c.vhost, unshared) // after the record no longer lists them
	c.out().push(ack)
}

// handlePublish routes an inbound PUBLISH into the core and acknowledges it
// per its QoS.
func (c *conn) handlePublish(ctx context.Context, p *packet.Publish) error {
	topic := p.Topic
	ps := c.pubs()
	if c.version == packet.V5 {
		if a := p.Properties.TopicAlias; a != 0 {
			if a > c.h.cfg.TopicAliasMaximum {
				return &packet.Error{Code: packet.TopicAliasInvalid, Text: "topic alias above maximum [MQTT-3.3.2-9]"}
			}
			if ps.inAliases == nil {
				ps.inAliases = make(map[uint16]string)
			}
			if topic != "" {
				ps.inAliases[a] = topic
			} else if topic = ps.inAliases[a]; topic == "" {
				return &packet.Error{Code: packet.ProtocolError, Text: "topic alias not set on this connection [MQTT-3.3.2-12]"}
			}
		}
		if pf := p.Properties.PayloadFormat; pf != nil && *pf == 1 && !validUTF8(p.Payload) {
			return c.nack(p, packet.PayloadFormatInvalid, "payload is not UTF-8 as its format indicator says")
		}
	}
	if c.version == packet.V5 && p.QoS > 0 {
		// [MQTT-3.3.4-7..9]: the client may have at most our Receive
		// Maximum QoS 1/2 publishes without PUBACK/PUBCOMP: QoS 1 ones
		// whose PUBACK waits for the disk, QoS 2 ones awaiting PUBREL (a
		// resent one does not count twice).
		n := len(ps.inQoS2) + int(c.unsentPubacks.Load()) + 1
		if _, again := ps.inQoS2[p.PacketID]; again && p.QoS == 2 {
			n--
		}
		if n > int(c.h.cfg.ReceiveMaximum) {
			return &packet.Error{Code: packet.ReceiveMaximumExceeded,
				Text: fmt.Sprintf("more than %d QoS 1/2 publishes unacknowledged", c.h.cfg.ReceiveMaximum)}
		}
	}
	if p.QoS == 2 {
		c.sess.mu.Lock()
		_, dup := c.sess.qos2[p.PacketID]
		if !dup {
			if c.sess.qos2 == nil {
				c.sess.qos2 = make(map[uint16]struct{})
			}
			c.sess.qos2[p.PacketID] = struct{}{}
		}
		c.sess.mu.Unlock()
		if ps.inQoS2 == nil {
			ps.inQoS2 = make(map[uint16]struct{}) // most connections never publish QoS 2
		}
		ps.inQoS2[p.PacketID] = struct{}{}
		if dup {
			// Already routed; the PUBREC got lost [MQTT-4.3.3-10], or is
			// still waiting for the first copy to reach the disk: this one
			// waits for everything logged so far.
			c.confirmQueue().ConfirmAfter(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID}, c.publisher().WaitLog)
			return nil
		}
	}
	if err := c.allowPublish(topic); err != nil {
		// As RabbitMQ: v5 QoS 1/2 get a negative PUBACK/PUBREC 0x87; a v5
		// QoS 0 and every 3.1.1 publish (no negative ack there) close the
		// connection.
		if p.QoS == 2 {
			c.sess.mu.Lock()
			delete(c.sess.qos2, p.PacketID)
			c.sess.mu.Unlock()
			c.dropInQoS2(p.PacketID)
		}
		c.logger().Info("mqtt publish refused", "topic", topic, "err", err)
		return c.nack(p, packet.NotAuthorized, err.Error())
	}
	m := toMessage(p, topic, c.clientID, c.version, time.Now())
	if c.version == packet.V5 && p.Properties.ResponseTopic != "" {
		if r := c.replyQueue(p.Properties.ResponseTopic); r != nil {
			m.Properties.ReplyTo = r.Name()
		}
	}
	if !c.rate.Wait(ctx.Done()) {
		return ctx.Err()
	}
	n, err := c.publisher().Publish(m)
	logged := false // something beside the message went to the log
	if err == nil {
		c.reg.Load().CountPublish()
		if p.Retain {
			// A PUBACK/PUBREC for a retained message says it is kept:
			// confirmPublish waits for the log.
			c.h.retain(c.vhost, topic, m)
			logged = true
		}
		if p.QoS == 2 && c.persistent {
			// The id awaiting PUBREL is part of the session: a PUBLISH
			// resent after a restart must not be routed again.
			c.saveSession(time.Time{}, false, nil)
			logged = true
		}
	}
	code := packet.Success
	switch {
	case err != nil:
		c.logger().Warn("mqtt publish failed", "topic", topic, "err", err)
		code = packet.UnspecifiedError
		if errors.Is(err, broker.ErrAccessRefused) {
			code = packet.NotAuthorized
		}
	case c.publisher().Rejected():
		// A queue full with x-overflow reject-publish refused it (AMQP
		// nacks the confirm; RabbitMQ's MQTT plugin answers 0x97).
		code = packet.QuotaExceeded
	case n == 0 && c.version == packet.V5:
		code = packet.NoMatchingSubscribers
	}
	if code.Failed() && c.version != packet.V5 && p.QoS > 0 {
		// 3.1.1 has no negative PUBACK/PUBREC: a positive one would claim
		// the message is safe, so the connection is closed instead (a
		// persistent session resends it after reconnecting).
		if p.QoS == 2 {
			c.sess.mu.Lock()
			delete(c.sess.qos2, p.PacketID)
			c.sess.mu.Unlock()
			c.dropInQoS2(p.PacketID)
		}
		return &packet.Error{Code: code, Text: "publish to '" + topic + "' refused: " + code.Error()}
	}
	switch p.QoS {
	case 1:
		c.confirmPublish(ctx, &packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID, ReasonCode: v5Code(c.version, code)}, logged)
	case 2:
		if code.Failed() {
			c.sess.mu.Lock()
			delete(c.sess.qos2, p.PacketID)
			c.sess.mu.Unlock()
			c.dropInQoS2(p.PacketID)
		}
		c.confirmPublish(ctx, &packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID, ReasonCode: v5Code(c.version, code)}, logged)
	}
	if c.publisher().Congested() {
		// TCP push-back: stop reading this client until the queues drain.
		c.publisher().WaitFlow(ctx.Done(), c.owner)
	}
	return nil
}

func v5Code(version byte, code packet.ReasonCode) packet.ReasonCode {
	if version != packet.V5 {
		return 0
	}
	return code
}

// nack refuses a publish: v5 with a negative PUBACK/PUBREC, v3 (which has
// no negative ack) by closing the connection.
func (c *conn) nack(p *packet.Publish, code packet.ReasonCode, why string) error {
	if c.version != packet.V5 || p.QoS == 0 {
		return &packet.Error{Code: code, Text: why}
	}
	kind := packet.PUBACK
	if p.QoS == 2 {
		kind = packet.PUBREC
	}
	// In order behind the answers still waiting for the disk.
	if kind == packet.PUBACK {
		c.unsentPubacks.Add(1)
	}
	c.confirmQueue().Add(&packet.Ack{Kind: kind, PacketID: p.PacketID, ReasonCode: code, Properties: packet.Properties{ReasonString: why}})
	return nil
}

func (c *conn) handleAck(p *packet.Ack) error {
	switch p.Kind {
	case packet.PUBACK:
		c.out().settle(p.PacketID, &c.acks)
	case packet.PUBREC:
		c.handlePubrec(p.PacketID, p.ReasonCode)
	case packet.PUBCOMP:
		c.handlePubcomp(p.PacketID)
	case packet.PUBREL:
		c.sess.mu.Lock()
		_, ok := c.sess.qos2[p.PacketID]
		delete(c.sess.qos2, p.PacketID)
		c.sess.mu.Unlock()
		c.dropInQoS2(p.PacketID)
		if ok && c.persistent {
			c.saveSession(time.Time{}, false, nil) // released: a later reuse of the id is a new message
		}
		code := packet.Success
		if !ok {
			// Unknown id (released already, or the broker restarted since
			// the PUBLISH, which was routed when it arrived): complete the
			// flow so the client can free the id [MQTT-4.3.3-12].
			code = v5Code(c.version, packet.PacketIdentifierNotFound)
		}
		c.out().push(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID, ReasonCode: code})
	}
	return nil
}

// handlePubrec: the subscriber has a QoS 2 message. It is settled in its
// queue now, so that it is not delivered again (a reconnect, a restart),
// and released with PUBREL [MQTT-4.3.3-4]; its packet id stays in use, in
// the outbox and in the session (its durable record for a persistent
// session), until PUBCOMP.
func (c *conn) handlePubrec(id uint16, code packet.ReasonCode) {
	if code.Failed() {
		// v5: the client refused the message; the flow ends here and the
		// id is free again (MQTT 5 section 4.3.3).
		c.out().settle(id, &c.acks)
		return
	}
	fl, res := c.out().received(id)
	switch res {
	case pubrecUnknown:
		// Nothing of ours in flight with that id: a PUBREL lets the client
		// finish the flow (v5 says why).
		c.out().push(&packet.Ack{Kind: packet.PUBREL, PacketID: id, ReasonCode: v5Code(c.version, packet.PacketIdentifierNotFound)})
		return
	case pubrecAgain:
		c.out().push(&packet.Ack{Kind: packet.PUBREL, PacketID: id})
		return
	}
	c.sess.mu.Lock()
	c.sess.pubcomp = append(c.sess.pubcomp, id)
	c.sess.mu.Unlock()
	c.acks.add(fl)
	rel := &packet.Ack{Kind: packet.PUBREL, PacketID: id}
	if !c.persistent {
		c.out().push(rel)
		return
	}
	// The record that lists the id goes to the log before the queue's ack
	// of the message, and the PUBREL goes out once both are on disk: after
	// a kill -9 either the message is delivered again (its PUBREC was not
	// answered) or the restarted broker sends this PUBREL again.
	c.saveSession(time.Time{}, false, nil)
	c.flushAcks()
	c.confirmQueue().ConfirmAfter(rel, c.publisher().WaitLog)
}

// handlePubcomp ends a QoS 2 delivery: its id leaves the session (and its
// record) and then the outbox, which may hand it out again. A PUBCOMP for
// an id not awaiting one is ignored.
func (c *conn) handlePubcomp(id uint16) {
	c.sess.mu.Lock()
	i := slices.Index(c.sess.pubcomp, id)
	if i >= 0 {
		c.sess.pubcomp = slices.Delete(c.sess.pubcomp, i, i+1)
	}
	c.sess.mu.Unlock()
	if i < 0 {
		return
	}
	if c.persistent {
		// Before the id can be used again, so that a restart does not
		// release a later message with it.
		c.saveSession(time.Time{}, false, nil)
	}
	c.out().complete(id)
}

// resumePubrels sends PUBREL again for the session's QoS 2 deliveries
// awaiting PUBCOMP, in the order of their PUBRECs, with their packet ids,
// which the outbox keeps in use (and in the window) until PUBCOMP. It runs
// before the session's consumers start and before CONNACK, so the PUBRELs
// are the first packets after it.
func (c *conn) resumePubrels() {
	c.sess.mu.Lock()
	ids := slices.Clone(c.sess.pubcomp)
	c.sess.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	c.out().reserve(ids)
	for _, id := range ids {
		c.out().push(&packet.Ack{Kind: packet.PUBREL, PacketID: id})
	}
}

// replyQueue returns the direct reply-to queue standing for a v5 Response
// Topic, so that an AMQP server replying the RPC way (default exchange,
// routing key = reply_to) reaches this requester: the reply arrives on the
// queue and is delivered as a PUBLISH on the response topic. At most
// maxReplyTopics per connection; beyond that reply_to keeps the routing-key
// form of the topic (fine for MQTT or amq.topic responders).
func (c *conn) replyQueue(topic string) *broker.Queue {
	ps := c.pubs()
	if q, ok := ps.replies[topic]; ok {
		return q
	}
	if len(ps.replies) >= maxReplyTopics || !packet.ValidTopicName(topic) {
		return nil
	}
	q := c.vhost.DeclareReplyQueue(c.owner)
	if _, err := q.Consume(broker.ConsumerOptions{NoAck: true, Owner: c.owner, Sink: &sink{c: c, replyTopic: topic}}); err != nil {
		c.logger().Warn("mqtt reply queue failed", "err", err)
		return nil
	}
	if ps.replies == nil {
		ps.replies = make(map[string]*broker.Queue)
	}
	ps.replies[topic] = q
	return q
}

const maxReplyTopics = 16
