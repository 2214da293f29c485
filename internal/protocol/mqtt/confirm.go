package mqtt

import (
	"context"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Inbound PUBACK and PUBREC: the answer to a QoS 1/2 PUBLISH says the
// broker has the message, so for a persistent message (QoS 1/2 publish
// as delivery mode 2, as RabbitMQ's plugin does) routed to a durable
// queue it goes out only once the message log has fsynced it, and a
// retained publish's answer once the retained change is on disk. The read
// loop does not wait for that: it queues the answer in c.confirms (the
// core's ConfirmQueue) and reads on, so a client's in-flight publishes
// share one group commit. The queue releases answers in the order the
// PUBLISHes arrived [MQTT-4.6.0-2, -3]; answers that need no disk (QoS 0
// has none; no durable queue matched; a refusal) go out at once unless an
// earlier one is still waiting.

// maxUnsentConfirms bounds the answers a connection may have waiting for
// the disk; beyond it the read loop stops reading that client until the
// log catches up (push-back). A v5 client is held to our Receive Maximum
// well before that.
const maxUnsentConfirms = 4096

// confirmQueue is c.confirms, made by the first answer that needs it (a
// subscriber that never publishes at QoS 1 or 2 holds none). Read loop
// only.
func (c *conn) confirmQueue() *broker.ConfirmQueue[*packet.Ack] {
	if c.confirms == nil {
		c.confirms = broker.NewConfirmQueue(c.sendConfirm)
	}
	return c.confirms
}

// sendConfirm hands a due PUBACK/PUBREC (or an outbound QoS 2 PUBREL, see
// handlePubrec) to the writer. It runs under the ConfirmQueue's lock,
// maybe on the log's commit goroutine: it only queues. err is set if the
// message could not be written to disk: the client must not be told it is
// safe. A v5 client gets a negative answer, a 3.1.1 client (which has
// none) loses the connection and publishes again after reconnecting.
func (c *conn) sendConfirm(a *packet.Ack, err error) {
	if a.Kind == packet.PUBACK {
		c.unsentPubacks.Add(-1)
	}
	if err == nil {
		c.out().push(a)
		return
	}
	if a.Kind == packet.PUBREL {
		// An outbound QoS 2 release (handlePubrec) whose session record
		// did not reach the disk: the connection ends; the session still
		// lists the id, so a reconnect gets the PUBREL.
		c.logger().Error("mqtt session record not written to disk; closing", "packet_id", a.PacketID, "err", err)
		c.kick(packet.UnspecifiedError)
		return
	}
	c.logger().Error("mqtt publish not written to disk; not acknowledged", "packet_id", a.PacketID, "err", err)
	if a.Kind == packet.PUBREC {
		// A resent PUBLISH must be routed again, not taken for a duplicate.
		c.sess.mu.Lock()
		delete(c.sess.qos2, a.PacketID)
		c.sess.mu.Unlock()
	}
	if c.version != packet.V5 {
		c.kick(packet.UnspecifiedError)
		return
	}
	c.out().push(&packet.Ack{Kind: a.Kind, PacketID: a.PacketID, ReasonCode: packet.UnspecifiedError,
		Properties: packet.Properties{ReasonString: "the message could not be written to disk"}})
}

// confirmPublish queues the answer to a routed QoS 1/2 PUBLISH: at once
// for a refusal, after the disk for what the log took.
func (c *conn) confirmPublish(ctx context.Context, a *packet.Ack, retained bool) {
	if a.Kind == packet.PUBACK {
		c.unsentPubacks.Add(1)
	}
	switch {
	case a.ReasonCode.Failed():
		c.confirmQueue().Add(a)
	case retained:
		// The retained change went to the log beside the message: a
		// barrier behind both.
		c.confirmQueue().ConfirmAfter(a, c.publisher().WaitLog)
	default:
		c.confirmQueue().Confirm(c.publisher(), a)
	}
	c.confirmQueue().Wait(maxUnsentConfirms, ctx.Done())
}
