package amqp091

import (
	"maps"
	"runtime"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
	"github.com/heraldmq/herald/internal/protocol/kit"
)

type itemKind uint8

const (
	itemMethod  itemKind = iota // any method without content
	itemDeliver                 // basic.deliver + content
	itemGetOk                   // basic.get-ok + content
	itemReturn                  // basic.return + content
	itemAck                     // publisher confirm basic.ack
	itemNack                    // publisher confirm basic.nack
)

// outItem is one thing to write. Deliveries carry their fields inline so
// that queueing one allocates nothing.
type outItem struct {
	kind    itemKind
	channel uint16
	flag    bool // redelivered, or multiple for confirms
	code    uint16
	count   uint32
	// deliveries counts earlier deliveries of the message: it becomes the
	// x-delivery-count header on a redelivery.
	deliveries uint32
	tag        uint64
	consumer   string
	text       string
	method     frame.Method
	msg        *broker.Message
}

// Outbox bounds: a connection whose peer reads slowly stops receiving
// deliveries (its queues keep the messages) instead of growing the heap.
const (
	outboxMaxBytes = 4 << 20
	outboxMaxItems = 16384
)

// outbox is the connection's bounded write queue. Producers are the read
// loop (replies) and queue dispatch (deliveries, under the queue's lock);
// the single consumer is the writer goroutine, which flushes once per batch.
type outbox struct {
	mu       sync.Mutex
	items    []outItem
	bytes    int
	closed   bool
	blocked  []*consumerSink // refused because full; resumed on drain
	wake     kit.Wake
	drained  kit.Wake // signalled after every flush (for close handshakes)
	lastSent time.Time
}

func newOutbox() *outbox {
	return &outbox{wake: kit.NewWake(), drained: kit.NewWake()}
}

// push queues a control item; these are never refused (they are bounded by
// the client's own requests).
func (o *outbox) push(it outItem) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	// Confirms completed one by one (a group commit answers each
	// publish of its chunk in turn) become one multiple-ack while the
	// writer has not taken them yet: an ack covers every earlier tag.
	if n := len(o.items); it.kind == itemAck && n > 0 && o.items[n-1].kind == itemAck && o.items[n-1].channel == it.channel {
		o.items[n-1].tag, o.items[n-1].flag = it.tag, true
		o.mu.Unlock()
		return
	}
	o.items = append(o.items, it)
	if it.msg != nil {
		o.bytes += len(it.msg.Body)
	}
	o.mu.Unlock()
	o.wake.Ring()
}

// fullLocked reports whether deliveries must wait.
func (o *outbox) fullLocked() bool {
	return o.closed || o.bytes >= outboxMaxBytes || len(o.items) >= outboxMaxItems
}

// writerLoop writes queued items until stop is closed, then writes what is
// left and returns. It sends heartbeats when nothing else was written for
// an interval.
func (c *conn) writerLoop(stop <-chan struct{}) {
	var batch []outItem
	var ticker <-chan time.Time
	if hb := c.heartbeat; hb > 0 {
		t := time.NewTicker(hb / 2)
		defer t.Stop()
		ticker = t.C
	}
	lastWrite := time.Now()
	for {
		var stopping bool
		select {
		case <-c.out.wake:
			// Let the goroutines that are queueing deliveries right now
			// finish, so one write carries many of them.
			runtime.Gosched()
		case <-ticker:
			if time.Since(lastWrite) >= c.heartbeat/2 {
				c.extendWriteDeadline()
				if c.fw.WriteHeartbeat() != nil || c.fw.Flush() != nil {
					c.abort()
					return
				}
				lastWrite = time.Now()
			}
			continue
		case <-stop:
			stopping = true
		}
		for {
			c.out.mu.Lock()
			batch, c.out.items = c.out.items, batch[:0]
			c.out.bytes = 0
			var resume []*consumerSink
			if len(batch) == 0 {
				resume, c.out.blocked = c.out.blocked, nil
				for _, s := range resume {
					s.blocked = false
				}
			}
			c.out.mu.Unlock()
			for _, s := range resume {
				s.bc.Resume()
			}
			if len(batch) == 0 {
				break
			}
			c.extendWriteDeadline()
			for i := range batch {
				if err := c.writeItem(&batch[i]); err != nil {
					c.abort()
					return
				}
				batch[i] = outItem{}
			}
			if err := c.fw.Flush(); err != nil {
				c.abort()
				return
			}
			lastWrite = time.Now()
			c.out.drained.Ring()
		}
		if stopping {
			return
		}
	}
}

// extendWriteDeadline gives the writes about to happen the configured
// WriteTimeout (between it and 1.5 times it): a client that stops reading
// is disconnected once a write has waited that long (RabbitMQ's
// send_timeout), instead of holding its no-ack deliveries' queues in
// memory for ever. Renewed once half its slack is used, not for every
// batch (setting a deadline updates a runtime timer).
func (c *conn) extendWriteDeadline() {
	timeout := c.h.cfg.WriteTimeout
	if now := time.Now(); c.writeDeadline.Sub(now) < timeout {
		c.writeDeadline = now.Add(timeout + timeout/2)
		_ = c.nc.SetWriteDeadline(c.writeDeadline)
	}
}

func (c *conn) writeItem(it *outItem) error {
	w := c.fw
	switch it.kind {
	case itemMethod:
		return w.WriteMethod(it.channel, it.method)
	case itemDeliver:
		c.deliver = frame.BasicDeliver{ConsumerTag: it.consumer, DeliveryTag: it.tag, Redelivered: it.flag, Exchange: it.msg.Exchange, RoutingKey: it.msg.RoutingKey}
		if err := w.WriteMethod(it.channel, &c.deliver); err != nil {
			return err
		}
	case itemGetOk:
		c.getOk = frame.BasicGetOk{DeliveryTag: it.tag, Redelivered: it.flag, Exchange: it.msg.Exchange, RoutingKey: it.msg.RoutingKey, MessageCount: it.count}
		if err := w.WriteMethod(it.channel, &c.getOk); err != nil {
			return err
		}
	case itemReturn:
		c.ret = frame.BasicReturn{ReplyCode: it.code, ReplyText: it.text, Exchange: it.msg.Exchange, RoutingKey: it.msg.RoutingKey}
		if err := w.WriteMethod(it.channel, &c.ret); err != nil {
			return err
		}
	case itemAck:
		c.ack = frame.BasicAck{DeliveryTag: it.tag, Multiple: it.flag}
		return w.WriteMethod(it.channel, &c.ack)
	case itemNack:
		c.nack = frame.BasicNack{DeliveryTag: it.tag, Multiple: it.flag}
		return w.WriteMethod(it.channel, &c.nack)
	}
	c.props = frame.Properties(it.msg.Properties)
	if it.deliveries > 0 {
		h := make(frame.Table, len(c.props.Headers)+1)
		maps.Copy(h, c.props.Headers)
		h["x-delivery-count"] = int64(it.deliveries)
		c.props.Headers = h
	}
	return w.WriteContent(it.channel, frame.ClassBasic, &c.props, it.msg.Body, c.frameMax)
}
