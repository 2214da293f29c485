package amqpc

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Delivery is a message from a consumer (basic.deliver).
type Delivery struct {
	Properties
	ConsumerTag string
	DeliveryTag uint64
	Redelivered bool
	Exchange    string
	RoutingKey  string
	Body        []byte

	// pool takes the delivery back on Release; buf is its body (and
	// header table) allocation, whole, for the delivery it next becomes.
	pool *sync.Pool
	buf  []byte
}

// Release hands the delivery back to its connection, to become a later
// delivery: Body and the received headers are overwritten then. Call it
// once nothing of the delivery is used any more (its string fields are
// separate allocations and stay valid); without it the delivery is
// simply garbage collected.
func (d *Delivery) Release() {
	p, buf := d.pool, d.buf
	if p == nil {
		return
	}
	*d = Delivery{pool: p, buf: buf}
	p.Put(d)
}

// Return is a mandatory message the broker could not route (basic.return).
type Return struct {
	Properties
	ReplyCode  uint16
	ReplyText  string
	Exchange   string
	RoutingKey string
	Body       []byte
}

// Publishing is a message to publish.
type Publishing struct {
	Properties
	Body []byte
}

// consumer is a basic.consume's callbacks, called on the reader
// goroutine: deliver must not block for long (hand off, do not work).
type consumer struct {
	deliver func(*Delivery)
	end     func()
	// state: 0 until consume-ok reached Consume, 1 running, 2 ended. end
	// runs once, and only for a consumer Consume reported started.
	state atomic.Int32
}

// finish ends the consumer from the reader's side.
func (c *consumer) finish() {
	if c.state.Swap(2) == 1 && c.end != nil {
		c.end()
	}
}

// Channel is one AMQP channel. Publishing and acking are safe for
// concurrent use; synchronous methods (Qos, QueueDeclare, Consume,
// Cancel, Close) are serialised.
type Channel struct {
	c  *Conn
	id uint16

	callMu sync.Mutex // one synchronous method in flight
	rpc    chan []byte

	mu        sync.Mutex
	err       error // set once closed
	done      chan struct{}
	consumers map[string]*consumer
	onReturn  func(*Return)
	notify    []chan *Error

	// Content being assembled; reader goroutine only.
	in struct {
		deliver *Delivery
		ret     *Return
		props   *Properties
		body    *[]byte
		size    int
		cache   strCache
	}
}

// maxBodySize bounds a message the client accepts (the broker's own
// limit is far lower); larger is a protocol error.
const maxBodySize = 1 << 30

func newChannel(c *Conn, id uint16) *Channel {
	return &Channel{c: c, id: id, rpc: make(chan []byte, 1), done: make(chan struct{}), consumers: map[string]*consumer{}}
}

// call sends a synchronous method and waits for its answer's payload
// (after the class and method ids).
func (ch *Channel) call(method uint16, class uint16, wantMethod uint16, args func(*enc)) (dec, error) {
	ch.callMu.Lock()
	defer ch.callMu.Unlock()
	if err := ch.closedErr(); err != nil {
		return dec{}, err
	}
	if err := ch.c.write(func(b []byte) ([]byte, error) {
		return appendMethod(b, ch.id, class, method, args)
	}); err != nil {
		return dec{}, err
	}
	select {
	case p := <-ch.rpc:
		d := dec{b: p}
		if gc, gm := d.short(), d.short(); gc != class || gm != wantMethod {
			return dec{}, fmt.Errorf("amqpc: got method %d.%d, want %d.%d", gc, gm, class, wantMethod)
		}
		return d, nil
	case <-ch.done:
		return dec{}, ch.closedErr()
	}
}

func (ch *Channel) closedErr() error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.err
}

// frame handles one frame for this channel on the reader goroutine. An
// error is a protocol violation that ends the connection.
func (ch *Channel) frame(typ uint8, p []byte) error {
	switch typ {
	case frameMethod:
		if ch.in.props != nil {
			return errMalformed // a method in the middle of a content
		}
		return ch.method(p)
	case frameHeader:
		if ch.in.props == nil || ch.in.size >= 0 {
			return errMalformed
		}
		d := dec{b: p}
		if d.short() != classBasic {
			return errMalformed
		}
		_ = d.short() // weight
		size := d.longlong()
		props := d.properties(&ch.in.cache)
		if d.err != nil || size > maxBodySize {
			return errMalformed
		}
		// One allocation for the body (grown as body frames come if over
		// 1 MiB) and, after it, the header table's bytes; a released
		// delivery's when it is large enough.
		bodyCap := int(min(size, 1<<20))
		var buf []byte
		if del := ch.in.deliver; del != nil && cap(del.buf) >= bodyCap+len(props.rawHeaders) {
			buf = del.buf[:bodyCap]
		} else {
			buf = make([]byte, bodyCap, bodyCap+len(props.rawHeaders))
			if del != nil {
				del.buf = buf[:0]
			}
		}
		props.keepRawHeaders(buf)
		*ch.in.props = props
		ch.in.size = int(size)
		*ch.in.body = buf[:0:bodyCap]
	case frameBody:
		if ch.in.props == nil || ch.in.size < 0 || len(*ch.in.body)+len(p) > ch.in.size {
			return errMalformed
		}
		*ch.in.body = append(*ch.in.body, p...)
	default:
		return errMalformed
	}
	if ch.in.props != nil && ch.in.size >= 0 && len(*ch.in.body) == ch.in.size {
		ch.complete()
	}
	return nil
}

// complete hands an assembled delivery or return to its callback.
func (ch *Channel) complete() {
	d, r := ch.in.deliver, ch.in.ret
	ch.in.deliver, ch.in.ret, ch.in.props, ch.in.body = nil, nil, nil, nil
	if d != nil {
		ch.mu.Lock()
		cons := ch.consumers[d.ConsumerTag]
		ch.mu.Unlock()
		if cons != nil {
			cons.deliver(d)
		}
		return
	}
	ch.mu.Lock()
	on := ch.onReturn
	ch.mu.Unlock()
	if on != nil {
		on(r)
	}
}

func (ch *Channel) method(p []byte) error {
	d := dec{b: p}
	class, method := d.short(), d.short()
	switch {
	case class == classBasic && method == mBasicDeliver:
		del, _ := ch.c.deliveries.Get().(*Delivery)
		if del == nil {
			del = &Delivery{pool: &ch.c.deliveries}
		}
		del.ConsumerTag = d.cachedstr(&ch.in.cache.consumerTag)
		del.DeliveryTag = d.longlong()
		del.Redelivered = d.octet()&1 != 0
		del.Exchange = d.cachedstr(&ch.in.cache.exchange)
		del.RoutingKey = d.cachedstr(&ch.in.cache.routingKey)
		if d.err != nil {
			return errMalformed
		}
		ch.in.deliver, ch.in.props, ch.in.body, ch.in.size = del, &del.Properties, &del.Body, -1
	case class == classBasic && method == mBasicReturn:
		r := &Return{}
		r.ReplyCode = d.short()
		r.ReplyText = d.shortstr()
		r.Exchange = d.shortstr()
		r.RoutingKey = d.shortstr()
		if d.err != nil {
			return errMalformed
		}
		ch.in.ret, ch.in.props, ch.in.body, ch.in.size = r, &r.Properties, &r.Body, -1
	case class == classBasic && method == mBasicCancel:
		// The broker cancelled a consumer (its queue went).
		tag := d.shortstr()
		ch.endConsumer(tag)
	case class == classBasic && method == mBasicCancelOk:
		tag := d.shortstr()
		ch.endConsumer(tag)
		ch.answer(p)
	case class == classChannel && method == mChanClose:
		code, text := d.short(), d.shortstr()
		ch.c.forget(ch)
		_ = ch.c.write(func(b []byte) ([]byte, error) {
			return appendMethod(b, ch.id, classChannel, mChanCloseOk, nil)
		})
		ch.closed(&Error{Code: int(code), Reason: text, Server: true})
	case class == classChannel && method == mChanCloseOk:
		ch.c.forget(ch)
		ch.answer(p)
		ch.closed(ErrClosed)
	case class == classChannel && method == mChanFlow:
		active := d.octet()
		_ = ch.c.write(func(b []byte) ([]byte, error) {
			return appendMethod(b, ch.id, classChannel, mChanFlowOk, func(e *enc) { e.octet(active) })
		})
	case class == classBasic && (method == mBasicAck || method == mBasicNack):
		// Publisher confirms are not used; nothing to do.
	default:
		ch.answer(p)
	}
	return nil
}

// answer passes a synchronous method's reply to the waiting call.
func (ch *Channel) answer(p []byte) {
	cp := append([]byte(nil), p...)
	select {
	case ch.rpc <- cp:
	default: // nobody waits (an unsolicited method): drop it
	}
}

func (ch *Channel) endConsumer(tag string) {
	ch.mu.Lock()
	cons := ch.consumers[tag]
	delete(ch.consumers, tag)
	ch.mu.Unlock()
	if cons != nil {
		cons.finish()
	}
}

// closed ends the channel with err: consumers end, waiters and
// NotifyClose listeners are told.
func (ch *Channel) closed(err error) {
	ch.mu.Lock()
	if ch.err != nil {
		ch.mu.Unlock()
		return
	}
	ch.err = err
	cons := ch.consumers
	ch.consumers = map[string]*consumer{}
	notify := ch.notify
	ch.notify = nil
	close(ch.done)
	ch.mu.Unlock()
	for _, c := range cons {
		c.finish()
	}
	var aerr *Error
	if !errors.As(err, &aerr) {
		aerr = nil
	}
	for _, n := range notify {
		if aerr != nil {
			n <- aerr
		}
		close(n)
	}
}

// NotifyClose returns n, which gets the broker's error when it closes the
// channel (nothing on a client close or the connection's end without an
// error) and is then closed.
func (ch *Channel) NotifyClose(n chan *Error) chan *Error {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.err != nil {
		close(n)
	} else {
		ch.notify = append(ch.notify, n)
	}
	return n
}

// NotifyReturn sets the callback for returned mandatory messages; it runs
// on the connection's reader and must not block.
func (ch *Channel) NotifyReturn(f func(*Return)) {
	ch.mu.Lock()
	ch.onReturn = f
	ch.mu.Unlock()
}

// Qos sets the prefetch count (per consumer, as RabbitMQ's global=false).
func (ch *Channel) Qos(prefetch int) error {
	_, err := ch.call(mBasicQos, classBasic, mBasicQosOk, func(e *enc) {
		e.long(0)
		e.short(uint16(prefetch))
		e.octet(0)
	})
	return err
}

// QueueDeclare declares a queue; it returns the queue's name (the
// server's choice when name is empty).
func (ch *Channel) QueueDeclare(name string, durable, autoDelete, exclusive bool, args amqp.Table) (string, error) {
	d, err := ch.call(mQueueDeclare, classQueue, mQueueDeclareOk, func(e *enc) {
		e.short(0)
		e.shortstr(name)
		e.octet(bits(false, durable, exclusive, autoDelete, false))
		e.table(args)
	})
	if err != nil {
		return "", err
	}
	q := d.shortstr()
	if d.err != nil {
		return "", errMalformed
	}
	return q, nil
}

// Consume starts a consumer. deliver runs on the connection's reader for
// each delivery and must hand it off without blocking for long; end runs
// once when the consumer ends (cancelled by either side or its channel
// closed), if Consume returned no error (if it did, end never runs). An
// empty tag gets a unique one; the tag is returned.
func (ch *Channel) Consume(queue, tag string, autoAck, exclusive bool, args amqp.Table, deliver func(*Delivery), end func()) (string, error) {
	if tag == "" {
		tag = "amqpc-" + strconv.FormatUint(ch.c.consumerSeq.Add(1), 10)
	}
	ch.mu.Lock()
	if ch.err != nil {
		ch.mu.Unlock()
		return "", ch.err
	}
	if ch.consumers[tag] != nil {
		ch.mu.Unlock()
		return "", fmt.Errorf("amqpc: consumer tag %q in use", tag)
	}
	// Registered before the request: the first delivery may follow
	// consume-ok before this goroutine wakes.
	cons := &consumer{deliver: deliver, end: end}
	ch.consumers[tag] = cons
	ch.mu.Unlock()
	_, err := ch.call(mBasicConsume, classBasic, mBasicConsumOk, func(e *enc) {
		e.short(0)
		e.shortstr(queue)
		e.shortstr(tag)
		e.octet(bits(false, autoAck, exclusive, false, false))
		e.table(args)
	})
	if err != nil {
		cons.state.Store(2)
		ch.mu.Lock()
		if ch.consumers[tag] == cons {
			delete(ch.consumers, tag)
		}
		ch.mu.Unlock()
		return "", err
	}
	if !cons.state.CompareAndSwap(0, 1) && end != nil {
		end() // it ended between consume-ok and here
	}
	return tag, nil
}

// Cancel cancels a consumer and waits for the broker's cancel-ok; the
// consumer's end has run when it returns.
func (ch *Channel) Cancel(tag string) error {
	_, err := ch.call(mBasicCancel, classBasic, mBasicCancelOk, func(e *enc) {
		e.shortstr(tag)
		e.octet(0)
	})
	return err
}

// Publish sends a message.
func (ch *Channel) Publish(exchange, key string, mandatory bool, msg *Publishing) error {
	return ch.PublishAck(exchange, key, mandatory, msg, 0)
}

// PublishAck sends a message and, when ackTag is not 0, acks that
// delivery in the same write: a service's reply and the ack of its
// request cost one system call.
func (ch *Channel) PublishAck(exchange, key string, mandatory bool, msg *Publishing, ackTag uint64) error {
	if err := ch.closedErr(); err != nil {
		return err
	}
	frameMax := ch.c.frameMax
	return ch.c.write(func(b []byte) ([]byte, error) {
		start := len(b)
		// Written out rather than through appendMethod: its argument
		// closure would cost an allocation per message.
		b, at := beginFrame(b, frameMethod, ch.id)
		e := enc{b: b}
		e.short(classBasic)
		e.short(mBasicPublish)
		e.short(0)
		e.shortstr(exchange)
		e.shortstr(key)
		e.octet(bits(mandatory, false, false, false, false))
		if e.err != nil {
			return b[:start], e.err
		}
		b = endFrame(e.b, at)
		var err error
		if b, err = appendContent(b, ch.id, &msg.Properties, msg.Body, frameMax); err != nil {
			return b[:start], err
		}
		if ackTag != 0 {
			b = appendAck(b, ch.id, ackTag, false)
		}
		return b, nil
	})
}

// Ack acknowledges a delivery (and those before it when multiple).
func (ch *Channel) Ack(tag uint64, multiple bool) error {
	if err := ch.closedErr(); err != nil {
		return err
	}
	return ch.c.write(func(b []byte) ([]byte, error) { return appendAck(b, ch.id, tag, multiple), nil })
}

func appendAck(b []byte, channel uint16, tag uint64, multiple bool) []byte {
	b, at := beginFrame(b, frameMethod, channel)
	e := enc{b: b}
	e.short(classBasic)
	e.short(mBasicAck)
	e.longlong(tag)
	e.octet(bits(multiple, false, false, false, false))
	return endFrame(e.b, at)
}

// Close closes the channel (channel.close, awaiting close-ok).
func (ch *Channel) Close() error {
	_, err := ch.call(mChanClose, classChannel, mChanCloseOk, func(e *enc) {
		e.short(replySuccess)
		e.shortstr("")
		e.short(0)
		e.short(0)
	})
	if err != nil && !errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// bits packs up to five boolean arguments, the first in the lowest bit.
func bits(b ...bool) uint8 {
	var v uint8
	for i, x := range b {
		if x {
			v |= 1 << i
		}
	}
	return v
}
