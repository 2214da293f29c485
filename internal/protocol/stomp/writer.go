package stomp

import (
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

// outItem is one thing to write: a control frame, or a delivery that the
// writer turns into a MESSAGE (so that queue dispatch, which runs under the
// queue's lock, does no encoding).
type outItem struct {
	f     *frame.Frame
	sub   *subscription
	d     broker.Delivery
	tag   uint64
	close bool // close the connection once this is written
}

// Outbox bounds: a client that reads slowly stops receiving deliveries
// (its queues keep the messages) instead of growing the heap.
const (
	outboxMaxBytes = 4 << 20
	outboxMaxItems = 8192
	// writeChunk is how much the writer buffers before a write on TCP.
	writeChunk = 64 << 10
)

// pendingAck is a delivery waiting for ACK/NACK.
type pendingAck struct {
	sub   *subscription
	queue *broker.Queue
	id    uint64
}

// outbox is the connection's bounded write queue. Producers are the read
// loop (replies, receipts, errors) and queue dispatch (deliveries, under the
// queue's lock); the single consumer is the writer goroutine.
type outbox struct {
	mu      sync.Mutex // guards everything below, and subscription.unacked/blocked
	items   []outItem
	bytes   int
	closed  bool
	blocked []*subscription // refused a delivery because full; resumed on drain
	nextTag uint64
	pending map[uint64]pendingAck // by delivery tag
	wake    kit.Wake
	drained kit.Wake // signalled after each written batch
}

func newOutbox() *outbox {
	return &outbox{wake: kit.NewWake(), drained: kit.NewWake(), pending: make(map[uint64]pendingAck)}
}

// push queues a control frame. These are never refused: they are bounded
// by the client's own requests.
func (o *outbox) push(it outItem) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.items = append(o.items, it)
	o.mu.Unlock()
	o.wake.Ring()
}

// backlogged reports whether the client has stopped reading our replies;
// the read loop then stops reading its frames (TCP push-back), so that
// receipts and errors cannot pile up without bound.
func (o *outbox) backlogged() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.items) >= outboxMaxItems
}

func (o *outbox) fullLocked() bool {
	return o.closed || o.bytes >= outboxMaxBytes || len(o.items) >= outboxMaxItems
}

// writerLoop writes queued items until stop is closed, then writes what is
// left and returns. It sends a heart-beat EOL when nothing else was written
// for the negotiated interval.
func (c *conn) writerLoop(stop <-chan struct{}) {
	var batch []outItem
	var ticker <-chan time.Time
	if c.sendHB > 0 {
		t := time.NewTicker(c.sendHB / 2)
		defer t.Stop()
		ticker = t.C
	}
	lastWrite := time.Now()
	written := 0 // delivery bytes of the last batch, still in o.bytes
	for {
		var stopping bool
		select {
		case <-c.out.wake:
			// Let the goroutines queueing deliveries right now finish, so
			// that one write carries many of them.
			runtime.Gosched()
		case <-ticker:
			if time.Since(lastWrite) >= c.sendHB/2 {
				c.extendWriteDeadline()
				if _, err := c.nc.Write([]byte{'\n'}); err != nil {
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
			// o.bytes still counts this batch until it is written, so
			// the bound covers what the writer holds, not just the queue.
			c.out.bytes -= written
			written = 0
			var resume []*broker.Consumer
			if len(batch) == 0 {
				// Everything is written: let refused consumers try again.
				// A subscription still inside Consume has no bc yet; its
				// SUBSCRIBE resumes it once Consume returns.
				still := c.out.blocked[:0]
				for _, s := range c.out.blocked {
					if s.bc == nil {
						still = append(still, s)
						continue
					}
					s.blocked = false
					resume = append(resume, s.bc)
				}
				c.out.blocked = still
			}
			c.out.mu.Unlock()
			for _, bc := range resume {
				bc.Resume()
			}
			if len(batch) == 0 {
				break
			}
			closeAfter := false
			for i := range batch {
				if batch[i].sub != nil {
					written += len(batch[i].d.Message.Body)
				}
				c.encode(&batch[i])
				closeAfter = closeAfter || batch[i].close
				batch[i] = outItem{}
				// On WebSocket every frame is its own message; on TCP
				// frames are gathered into large writes.
				if c.ws || len(c.wbuf) >= writeChunk || closeAfter {
					if !c.flush() {
						return
					}
				}
				if closeAfter {
					c.out.mu.Lock()
					c.out.closed = true
					c.out.mu.Unlock()
					c.abort()
					return
				}
			}
			if !c.flush() {
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

// flush writes the buffered bytes; on failure it tears the socket down.
func (c *conn) flush() bool {
	if len(c.wbuf) == 0 {
		return true
	}
	c.extendWriteDeadline()
	_, err := c.nc.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.abort()
		return false
	}
	return true
}

// extendWriteDeadline gives the write about to happen the configured
// WriteTimeout (between it and 1.5 times it): a client that stops reading
// is disconnected once its socket buffers and the outbox are full and a
// write has waited that long, instead of holding its queues' messages in
// memory for ever. The deadline is renewed once half its slack is used,
// not for every write (setting one updates a runtime timer).
func (c *conn) extendWriteDeadline() {
	timeout := c.h.cfg.WriteTimeout
	if now := time.Now(); c.writeDeadline.Sub(now) < timeout {
		c.writeDeadline = now.Add(timeout + timeout/2)
		_ = c.nc.SetWriteDeadline(c.writeDeadline)
	}
}

func (c *conn) encode(it *outItem) {
	if it.f != nil {
		c.wbuf = frame.Append(c.wbuf, it.f, c.version)
		return
	}
	c.msg.Command = frame.MESSAGE
	c.msg.Headers = messageHeaders(c.msg.Headers[:0], it.sub, it.d, it.tag, c.version)
	c.msg.Body = it.d.Message.Body
	c.wbuf = frame.Append(c.wbuf, &c.msg, c.version)
	c.msg.Body = nil
}

// messageID is the MESSAGE's message-id and ack value: the subscription id
// and the connection-wide delivery tag, as RabbitMQ formats them.
func messageID(sub string, tag uint64) string {
	return "T_" + sub + "@@" + strconv.FormatUint(tag, 10)
}

// parseTag extracts the delivery tag from a message-id or ack value.
func parseTag(id string) (uint64, bool) {
	for i := len(id) - 1; i >= 1; i-- {
		if id[i] == '@' && id[i-1] == '@' {
			n, err := strconv.ParseUint(id[i+1:], 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
