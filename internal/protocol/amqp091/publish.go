package amqp091

import (
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

var publishMethod = &frame.BasicPublish{}

func (ch *channel) basicPublish(m *frame.BasicPublish) error {
	if m.Immediate {
		return connectionError(frame.NotImplemented, m, "immediate=true")
	}
	if err := ch.allowPublish(m, m.Exchange); err != nil {
		return err
	}
	if err := ch.allowTopic(m, auth.Write, m.Exchange, m.RoutingKey); err != nil {
		return err
	}
	ch.publishing = &broker.Message{Exchange: m.Exchange, RoutingKey: m.RoutingKey}
	ch.mandatory = m.Mandatory
	ch.expect = expectHeader
	return nil
}

// handleContent assembles a published message from its header and body frames.
func (ch *channel) handleContent(f frame.Frame) error {
	if ch.closing {
		return nil
	}
	switch f.Type {
	case frame.TypeHeader:
		if ch.expect != expectHeader {
			return connectionError(frame.UnexpectedFrame, nil, "content header on channel %d without basic.publish", ch.id)
		}
		var h frame.ContentHeader
		if err := frame.DecodeContentHeaderMemo(f.Payload, &h, &ch.hmemo); err != nil {
			return connectionError(frame.FrameError, publishMethod, "malformed content header: %v", err)
		}
		if h.ClassID != frame.ClassBasic {
			return connectionError(frame.FrameError, publishMethod, "content header for class %d; only basic (60) carries content", h.ClassID)
		}
		max := ch.c.h.cfg.MaxMessageSize
		if h.BodySize > max {
			ch.expect = expectMethod
			ch.publishing = nil
			return channelError(frame.PreconditionFailed, publishMethod, "message size %d is larger than configured max size %d", h.BodySize, max)
		}
		ch.publishing.Properties = broker.Properties(h.Properties)
		ch.bodySize = h.BodySize
		ch.publishing.Body = make([]byte, 0, h.BodySize)
		if h.BodySize == 0 {
			return ch.completePublish()
		}
		ch.expect = expectBody
		return nil
	case frame.TypeBody:
		if ch.expect != expectBody {
			return connectionError(frame.UnexpectedFrame, nil, "content body on channel %d without a content header", ch.id)
		}
		if uint64(len(ch.publishing.Body))+uint64(len(f.Payload)) > ch.bodySize {
			return connectionError(frame.FrameError, publishMethod, "content body longer than the %d bytes the header announced", ch.bodySize)
		}
		ch.publishing.Body = append(ch.publishing.Body, f.Payload...)
		if uint64(len(ch.publishing.Body)) == ch.bodySize {
			return ch.completePublish()
		}
	}
	return nil
}

func (ch *channel) completePublish() error {
	msg, mandatory := ch.publishing, ch.mandatory
	ch.publishing, ch.expect = nil, expectMethod
	if c := ch.c; c.rate != nil {
		if c.rate.Throttled() {
			// About to stop reading: confirm what is done first, so that
			// a confirming publisher is not left waiting on us.
			c.flushConfirms()
		}
		if !c.rate.Wait(c.stopping) {
			return nil // shutting down: the connection is being closed
		}
	}
	if msg.Properties.ReplyTo == broker.DirectReplyTo {
		if ch.replyQueue == nil {
			return channelError(frame.PreconditionFailed, publishMethod, "fast reply consumer does not exist")
		}
		msg.Properties.ReplyTo = ch.replyQueue.Name()
	}
	if ch.tx {
		if _, err := ch.pub.Route(msg); err != nil {
			return fromBroker(err, publishMethod)
		}
		ch.txPublishes = append(ch.txPublishes, txPublish{msg: msg, mandatory: mandatory})
		return nil
	}
	return ch.publishNow(msg, mandatory)
}

func (ch *channel) publishNow(msg *broker.Message, mandatory bool) error {
	routed, err := ch.pub.Publish(msg)
	if err != nil {
		return fromBroker(err, publishMethod)
	}
	ch.c.reg.CountPublish()
	if ch.pub.Congested() {
		ch.c.congested = append(ch.c.congested, ch)
	}
	if routed == 0 && mandatory {
		ch.c.out.push(outItem{kind: itemReturn, channel: ch.id, code: frame.NoRoute, text: "NO_ROUTE", msg: msg})
	}
	if ch.confirm {
		cf := &ch.confirms
		stored := ch.pub.Stored()
		seq := cf.add(ch.pub.Rejected(), stored)
		if stored {
			ch.pub.WaitDurable(func(err error) { cf.complete(seq, err) })
		}
		if !ch.confirmQueued {
			ch.confirmQueued = true
			ch.c.pendingConfirm = append(ch.c.pendingConfirm, ch)
		}
	}
	return nil
}

// flushConfirms acknowledges every publish since the last flush with one
// basic.ack (multiple when more than one). The read loop calls it when it
// has drained its input, so a burst of publishes costs one confirm frame.
func (ch *channel) flushConfirms() {
	ch.confirmQueued = false
	if ch.closing || !ch.confirm {
		return
	}
	ch.confirms.flush()
}

func (ch *channel) txCommit(m *frame.TxCommit) error {
	if !ch.tx {
		return channelError(frame.PreconditionFailed, m, "channel is not transactional")
	}
	pubs, settles := ch.txPublishes, ch.txSettles
	ch.txPublishes, ch.txSettles = ch.txPublishes[:0], ch.txSettles[:0]
	for _, p := range pubs {
		if err := ch.publishNow(p.msg, p.mandatory); err != nil {
			return err
		}
	}
	for _, s := range settles {
		if err := ch.applySettle(m, s.tag, s.multiple, s.op); err != nil {
			return err
		}
	}
	clear(pubs)
	// tx.commit-ok says the transaction's publishes are done: like a
	// publisher confirm (and RabbitMQ's), it waits until the persistent
	// ones that durable queues took are on disk. The read loop goes on;
	// commit-oks keep their order.
	ch.txCommits.Confirm(ch.pub, struct{}{})
	return nil
}

// sendCommitOk sends a due tx.commit-ok; it runs under the ConfirmQueue's
// lock, maybe on the log's commit goroutine. If the messages could not be
// written to disk the commit did not happen as promised: the connection
// is closed (the client's commit fails) rather than answered.
func (ch *channel) sendCommitOk(_ struct{}, err error) {
	if err != nil {
		ch.c.log.Error("a transaction's persistent messages could not be written to disk; closing the connection", "channel", ch.id, "err", err)
		ch.c.forceClose("the message log failed: " + err.Error())
		return
	}
	ch.send(&frame.TxCommitOk{})
}
