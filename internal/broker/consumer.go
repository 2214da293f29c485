package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// Sink receives deliveries for a consumer. It is implemented by a protocol
// adapter (an AMQP channel, an MQTT session, a WebSocket).
type Sink interface {
	// Deliver offers d to the consumer. It is called with the queue's lock
	// held, so it must not block and must not call back into the queue.
	// Returning false means "full": the queue keeps the message and the sink
	// must call Consumer.Resume once it has room again.
	Deliver(d Delivery) bool
	// Cancelled tells the sink that the broker cancelled the consumer, for
	// example because its queue was deleted. Called with the queue's lock held.
	Cancelled(c *Consumer)
}

// ConsumerOptions configure Queue.Consume.
type ConsumerOptions struct {
	Tag       string
	NoAck     bool // deliveries are settled when handed to the sink
	Exclusive bool // no other consumer may use the queue meanwhile
	// Prefetch bounds this consumer's unacknowledged deliveries; 0 = no bound.
	Prefetch int
	// Limiter, if set, is a bound shared with other consumers (AMQP's
	// channel-wide basic.qos global=true).
	Limiter *Limiter
	Owner   Owner
	Args    Table
	Sink    Sink
}

// TimeoutSink is implemented by sinks that want to know when one of their
// deliveries outlived the queue's consumer timeout (x-consumer-timeout):
// the delivery is already back in the queue; AMQP closes the channel with
// 406, as RabbitMQ does. Called without locks held.
type TimeoutSink interface {
	DeliveryTimedOut(c *Consumer, timeout time.Duration)
}

// Consumer is a subscription of a sink to a queue.
type Consumer struct {
	queue     *Queue
	tag       string
	noAck     bool
	exclusive bool
	prefetch  int64
	limiter   *Limiter
	sink      Sink
	args      Table
	owner     Owner
	priority  int64 // x-priority: higher goes first

	unacked atomic.Int64
	// waiting is set when the queue skipped this consumer for lack of credit;
	// whoever frees credit swaps it back and kicks the queue.
	waiting   atomic.Bool
	cancelled atomic.Bool
}

// Tag is the consumer tag.
func (c *Consumer) Tag() string { return c.tag }

// Queue is the queue consumed from.
func (c *Consumer) Queue() *Queue { return c.queue }

// NoAck reports whether deliveries need no acknowledgement.
func (c *Consumer) NoAck() bool { return c.noAck }

// Unacked is the number of deliveries not yet settled.
func (c *Consumer) Unacked() int { return int(c.unacked.Load()) }

// Resume tells the queue that the consumer's sink has room again.
func (c *Consumer) Resume() {
	if !c.cancelled.Load() {
		c.queue.kind.dispatch()
	}
}

// Cancel detaches the consumer from its queue. Its unacknowledged
// deliveries stay unacknowledged: they can still be acked, or requeued.
func (c *Consumer) Cancel() { c.queue.kind.removeConsumer(c) }

// acquire takes one unit of credit; called under the queue's lock.
func (c *Consumer) acquire() bool {
	if c.noAck {
		return true
	}
	c.waiting.Store(true) // before checking, so a concurrent release sees it
	if c.prefetch > 0 && c.unacked.Load() >= c.prefetch {
		return false
	}
	if c.limiter != nil && !c.limiter.acquire(c) {
		return false
	}
	c.waiting.Store(false)
	c.unacked.Add(1)
	return true
}

func (c *Consumer) unacquire() {
	if c.noAck {
		return
	}
	c.unacked.Add(-1)
	if c.limiter != nil {
		c.limiter.n.Add(-1)
	}
}

// release returns n units of credit. It reports whether a waiting consumer
// of another queue may now be able to proceed (through the limiter).
func (c *Consumer) release(n int64) (wake *Limiter) {
	c.unacked.Add(-n)
	if c.limiter != nil {
		c.limiter.n.Add(-n)
		return c.limiter
	}
	return nil
}

// Limiter is a credit bound shared by several consumers.
type Limiter struct {
	limit atomic.Int64 // 0 = unlimited
	n     atomic.Int64

	mu        sync.Mutex // guards consumers
	consumers []*Consumer
}

// NewLimiter returns a shared bound of limit unacknowledged deliveries.
func NewLimiter(limit int) *Limiter {
	l := &Limiter{}
	l.limit.Store(int64(limit))
	return l
}

// SetLimit changes the bound; raising it wakes waiting consumers.
func (l *Limiter) SetLimit(limit int) {
	l.limit.Store(int64(limit))
	l.wake()
}

func (l *Limiter) acquire(c *Consumer) bool {
	for {
		n, lim := l.n.Load(), l.limit.Load()
		if lim > 0 && n >= lim {
			return false
		}
		if l.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (l *Limiter) add(c *Consumer) {
	l.mu.Lock()
	l.consumers = append(l.consumers, c)
	l.mu.Unlock()
}

func (l *Limiter) remove(c *Consumer) {
	l.mu.Lock()
	for i, x := range l.consumers {
		if x == c {
			l.consumers = append(l.consumers[:i], l.consumers[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
}

// wake kicks every consumer that was skipped for lack of credit.
func (l *Limiter) wake() {
	l.mu.Lock()
	var kick []*Consumer
	for _, c := range l.consumers {
		if c.waiting.Swap(false) {
			kick = append(kick, c)
		}
	}
	l.mu.Unlock()
	for _, c := range kick {
		c.Resume()
	}
}
