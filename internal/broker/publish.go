package broker

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// DirectReplyTo is the pseudo-queue of RabbitMQ's direct reply-to: a caller
// consumes from it (no-ack) and publishes requests with reply_to set to it;
// the broker rewrites reply_to to a per-caller address that routes straight
// back through the default exchange.
const DirectReplyTo = "amq.rabbitmq.reply-to"

const directReplyPrefix = DirectReplyTo + "."

// Publisher routes messages for one publishing client (an AMQP channel,
// an MQTT session). It reuses its scratch space, so it is not safe for
// concurrent use; each client owns one.
type Publisher struct {
	vhost  *VHost
	queues []*Queue
	dests  []destination
	stack  []*Exchange
	seen   []*Exchange
	large  map[*Queue]struct{}
	// congested are target queues whose consumers fell behind.
	congested []*Queue
	rejected  bool
	stored    bool      // the last message was written to the log
	unsynced  bool      // a message since the last wait (WaitDurable, WaitPublished, WaitLog) was written to the log
	wroteLog  bool      // a message since the last WaitFlow was written to the log
	delayBy   *Exchange // set by Route when m must wait in a delayed exchange
	// viaUser: the last routing passed through UserExchange.
	viaUser bool
	// streamed: the last message was appended to a stream; streams are
	// the streams appended to since the last wait (their barriers join
	// the log's in WaitDurable and WaitPublished).
	streamed bool
	streams  []*streamQueue
	// quorumWaits are the proposals to replicated quorum queues since the
	// last wait; quorumLast: the last message was one (quorum_publish.go).
	quorumWaits []*quorumFuture
	quorumLast  bool
}

// Rejected reports whether a target queue refused the last published
// message (a length limit with x-overflow reject-publish): a publisher
// confirm for it must be a nack.
func (p *Publisher) Rejected() bool { return p.rejected }

// RefusedError is Rejected as an error (506, for HTTP 503), for protocols
// that have no negative confirm: nil when no queue refused the message.
func (p *Publisher) RefusedError() error {
	if !p.rejected {
		return nil
	}
	return errorf(CodeResourceError, "a queue refused the message: it is full and its overflow behaviour is reject-publish; consume from it or raise its x-max-length")
}

// parseExpiration reads the expiration property: a TTL in milliseconds,
// written as a decimal string, as RabbitMQ defines it.
func parseExpiration(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errorf(CodePreconditionFailed, "invalid expiration '%s': use a non-negative number of milliseconds", s)
	}
	return n, nil
}

// Publisher returns a new publisher for this virtual host.
func (v *VHost) Publisher() *Publisher { return &Publisher{vhost: v} }

// Route reports the queues m would be delivered to, without enqueueing.
// The slice is reused by the next call. A message that passes through
// UserExchange first gives the user's waiting listeners their queues
// (UserListener), then routes again to reach them.
func (p *Publisher) Route(m *Message) ([]*Queue, error) {
	qs, err := p.route(m)
	if err == nil && p.viaUser && p.vhost.listeners.materialize(m.RoutingKey) {
		qs, err = p.route(m)
	}
	return qs, err
}

func (p *Publisher) route(m *Message) ([]*Queue, error) {
	v := p.vhost
	p.viaUser = false
	v.mu.RLock()
	defer v.mu.RUnlock()
	e, ok := v.exchanges[m.Exchange]
	if !ok {
		return nil, errorf(CodeNotFound, "no exchange '%s' in vhost '%s'", m.Exchange, v.name)
	}
	if e.internal {
		return nil, errorf(CodeAccessRefused, "cannot publish to internal exchange '%s' in vhost '%s'", e.name, v.name)
	}
	p.queues = p.queues[:0]
	p.delayBy = nil
	clear(p.large)
	if e.name == "" {
		if q, ok := v.queues[m.RoutingKey]; ok {
			if !q.internal || strings.HasPrefix(m.RoutingKey, directReplyPrefix) {
				p.queues = append(p.queues, q)
			}
		}
		return p.queues, nil
	}
	if e.kind == KindDelayed {
		if _, ok := delayOf(m); ok {
			p.delayBy = e
			return p.queues, nil
		}
	}
	p.routeFrom(e, m)
	if len(p.queues) == 0 && e.alternate != "" {
		if ae, ok := v.exchanges[e.alternate]; ok {
			p.routeFrom(ae, m)
		}
	}
	return p.queues, nil
}

// routeFrom walks the exchange graph from e; exchange-to-exchange cycles
// are cut by visiting each exchange once.
func (p *Publisher) routeFrom(e *Exchange, m *Message) {
	p.stack = append(p.stack[:0], e)
	p.seen = p.seen[:0]
	for len(p.stack) > 0 {
		x := p.stack[len(p.stack)-1]
		p.stack = p.stack[:len(p.stack)-1]
		if slices.Contains(p.seen, x) {
			continue
		}
		p.seen = append(p.seen, x)
		if x.name == UserExchange {
			p.viaUser = true
		}
		p.dests = x.match(m, p.dests[:0])
		for _, d := range p.dests {
			switch d := d.(type) {
			case *Queue:
				p.addQueue(d)
			case *Exchange:
				p.stack = append(p.stack, d)
			}
		}
	}
	clear(p.dests)
}

// addQueue adds q once; a linear scan is fastest for the usual handful of
// queues, a set takes over for large fan-outs.
func (p *Publisher) addQueue(q *Queue) {
	if len(p.queues) < 32 {
		for _, x := range p.queues {
			if x == q {
				return
			}
		}
		p.queues = append(p.queues, q)
		return
	}
	if p.large == nil {
		p.large = make(map[*Queue]struct{})
	}
	if len(p.large) == 0 {
		for _, x := range p.queues {
			p.large[x] = struct{}{}
		}
	}
	if _, ok := p.large[q]; ok {
		return
	}
	p.large[q] = struct{}{}
	p.queues = append(p.queues, q)
}

// Outcome is what became of one published message, as a value.
type Outcome struct {
	// Routed is the number of queues that took it; 0 = unroutable. A
	// message held by a delayed exchange counts as routed once.
	Routed int
	// Rejected: a target queue refused it (a length limit with x-overflow
	// reject-publish); a publisher confirm must be a nack.
	Rejected bool
	// Stored: it was written to the log; its confirm waits for
	// WaitDurable (the disk).
	Stored bool
	// Congested: a target queue's consumers fell behind, a resource alarm
	// is raised or the log's writes are behind; call WaitFlow before
	// reading the client's next message.
	Congested bool
}

// PublishOutcome is Publish returning everything the adapter must act on
// in one value, instead of Publish's count followed by Rejected, Stored
// and Congested.
func (p *Publisher) PublishOutcome(m *Message) (Outcome, error) {
	n, err := p.Publish(m)
	return Outcome{Routed: n, Rejected: p.rejected, Stored: p.stored, Congested: p.Congested()}, err
}

// Publish routes m and enqueues it in every target queue. It returns the
// number of queues that took it (0 = unroutable).
func (p *Publisher) Publish(m *Message) (int, error) {
	p.rejected = false // not left over from the previous message when this one fails or is delayed
	p.streamed = false
	p.quorumLast = false
	qs, err := p.Route(m)
	if err != nil {
		return 0, err
	}
	if p.delayBy != nil {
		e := p.delayBy
		p.delayBy = nil
		// Held by the exchange; like RabbitMQ's plugin, a delayed message
		// counts as routed (mandatory cannot be honoured for it).
		if d, ok := delayOf(m); ok {
			if m.Properties.Expiration != "" {
				if _, err := parseExpiration(m.Properties.Expiration); err != nil {
					return 0, err
				}
			}
			p.stored = e.schedule(m, d)
			p.unsynced = p.unsynced || p.stored
			return 1, nil
		}
	}
	exp := int64(-1)
	if m.Properties.Expiration != "" {
		if exp, err = parseExpiration(m.Properties.Expiration); err != nil {
			return 0, err
		}
	}
	nq := 0
	if p.vhost.broker.quorum.Load() != nil {
		nq, qs = p.enqueueReplicated(m, qs)
	}
	p.stored = p.vhost.broker.prepareStore(m, qs)
	p.wroteLog = p.wroteLog || p.stored
	n, anyStored := p.enqueueAll(m, exp, qs)
	n += nq
	if p.vhost.broker.streams.Load() > 0 {
		p.noteStreams(qs)
	}
	if m.Properties.CorrelationID != "" {
		p.noteReply(m) // the lookup service's reply statistics (services.go)
	}
	clear(p.queues)
	if p.stored && !anyStored {
		p.vhost.broker.abandonStored(m)
		p.stored = false
	}
	p.unsynced = p.unsynced || p.stored
	return n, nil
}

// noteStreams remembers the streams among qs: the message's confirm waits
// for their fsync too.
func (p *Publisher) noteStreams(qs []*Queue) {
	for _, q := range qs {
		if s, ok := q.kind.(*streamQueue); ok {
			p.streamed = true
			if !slices.Contains(p.streams, s) {
				p.streams = append(p.streams, s)
			}
		}
	}
}

// Stored reports whether the last published message was written to the
// log or to a stream, so that its confirm must wait for WaitDurable.
func (p *Publisher) Stored() bool { return p.stored || p.streamed || p.quorumLast }

// WaitDurable arranges for done to be called once the last published
// message is on disk, and reports whether it will be; if not (transient,
// or no durable queue took it) the message needs no wait. done runs on
// the log's (or a stream's) commit goroutine: it must not block.
func (p *Publisher) WaitDurable(done func(error)) bool {
	if !p.stored && !p.streamed && !p.quorumLast {
		return false
	}
	logged := p.stored
	if logged {
		p.unsynced = false
	}
	p.stored, p.streamed, p.quorumLast = false, false, false
	p.waitAll(logged, done)
	return true
}

// waitAll calls done once the log (if logged) and every stream in
// p.streams have made durable what was appended so far, with the first
// error; it forgets the streams.
func (p *Publisher) waitAll(logged bool, done func(error)) {
	n := len(p.streams) + len(p.quorumWaits)
	if logged {
		n++
	}
	if n > 1 {
		j := &joinedWait{done: done}
		j.left.Store(int64(n))
		done = j.one
	}
	if logged {
		p.vhost.broker.store.AppendFunc(nil, done) // a barrier behind the message's records
	}
	for _, s := range p.streams {
		s.barrier(done)
	}
	p.waitQuorum(done)
	clear(p.streams)
	p.streams = p.streams[:0]
}

// joinedWait calls done once all of its parts are done, with the first
// error any of them had.
type joinedWait struct {
	left atomic.Int64
	err  atomic.Pointer[error]
	done func(error)
}

func (j *joinedWait) one(err error) {
	if err != nil {
		j.err.CompareAndSwap(nil, &err)
	}
	if j.left.Add(-1) == 0 {
		var e error
		if p := j.err.Load(); p != nil {
			e = *p
		}
		j.done(e)
	}
}

// WaitPublished is WaitDurable for every message published since the last
// wait (WaitDurable or WaitPublished), not just the last one: a STOMP
// COMMIT of several SENDs, or any adapter that does not track which
// message was stored. It reports false if none of them was written to the
// log (transient, or no durable queue took it): they need no wait. done
// runs on the log's commit goroutine (or at once, on the caller's, if the
// log has failed): it must not block.
func (p *Publisher) WaitPublished(done func(error)) bool {
	if !p.unsynced && len(p.streams) == 0 && len(p.quorumWaits) == 0 {
		return false
	}
	logged := p.unsynced
	p.stored, p.unsynced, p.streamed, p.quorumLast = false, false, false, false
	p.waitAll(logged, done)
	return true
}

// WaitLog arranges for done to be called once everything written to the
// message log so far, by anyone (keyed stores included), is on disk; it
// reports false if the broker keeps no log. For acknowledgements that do
// not follow a publish of this publisher: a retained message's change, an
// MQTT QoS 2 PUBLISH resent while its first copy may still be on its way
// to the disk. Same rules for done as WaitPublished.
func (p *Publisher) WaitLog(done func(error)) bool {
	st := p.vhost.broker.store
	if st == nil {
		return false
	}
	p.stored, p.unsynced = false, false
	st.AppendFunc(nil, done)
	return true
}

// AwaitPublished blocks until every message published since the last wait
// is on disk (see WaitPublished), or stop is closed. For callers that
// answer one publish at a time (an HTTP request).
func (p *Publisher) AwaitPublished(stop <-chan struct{}) error {
	ch := make(chan error, 1)
	if !p.WaitPublished(func(err error) { ch <- err }) {
		return nil
	}
	select {
	case err := <-ch:
		return err
	case <-stop:
		return errors.New("cancelled while waiting for the message log")
	}
}

// Congested reports whether a queue this publisher feeds has more backlog
// than its consumers keep up with; the caller should WaitFlow before it
// reads the next message from its client (TCP push-back on that client
// only, never on unrelated publishers).
// A raised resource alarm congests every publisher, and so does a message
// log whose writes fall behind (more than maxPendingLog bytes waiting).
func (p *Publisher) Congested() bool {
	return len(p.congested) > 0 || p.vhost.broker.Alarmed() || p.logBehind()
}

// maxPendingLog bounds the bytes appended to the log but not yet written
// before publishers of persistent messages are held back.
const maxPendingLog = 64 << 20

func (p *Publisher) logBehind() bool {
	st := p.vhost.broker.store
	return p.wroteLog && st != nil && st.PendingBytes() > maxPendingLog
}

// maxFlowWait bounds one wait so that publishers that feed each other's
// queues slow down instead of deadlocking.
const maxFlowWait = time.Second

// WaitFlow blocks until the congested queues have drained to their low
// watermark, done is closed, or maxFlowWait passes. owner's own consumers
// never hold it back.
func (p *Publisher) WaitFlow(done <-chan struct{}, owner Owner) {
	if p.logBehind() {
		// The disk is slower than the publishers: wait until what this
		// publisher appended is written (a barrier), then go on.
		select {
		case <-barrier(p.vhost.broker.store):
		case <-done:
			return
		}
	}
	p.wroteLog = false
	if cleared := p.vhost.broker.alarmCleared(); cleared != nil {
		// A resource alarm holds every publisher until it clears.
		select {
		case <-cleared:
		case <-done:
			clear(p.congested)
			p.congested = p.congested[:0]
			return
		}
	}
	var timer *time.Timer
	for _, q := range p.congested {
		ch := q.flowChan(owner)
		if ch == nil {
			continue
		}
		if timer == nil {
			timer = time.NewTimer(maxFlowWait)
			defer timer.Stop()
		}
		select {
		case <-ch:
		case <-done:
			clear(p.congested)
			p.congested = p.congested[:0]
			return
		case <-timer.C:
			clear(p.congested)
			p.congested = p.congested[:0]
			return
		}
	}
	clear(p.congested)
	p.congested = p.congested[:0]
}

// publishFrom routes a due delayed message from e (ignoring its x-delay)
// and enqueues it.
func (p *Publisher) publishFrom(e *Exchange, m *Message) {
	v := p.vhost
	v.mu.RLock()
	if v.exchanges[e.name] != e {
		v.mu.RUnlock()
		return // deleted meanwhile
	}
	p.queues = p.queues[:0]
	clear(p.large)
	p.viaUser = false
	p.routeFrom(e, m)
	v.mu.RUnlock()
	if p.viaUser && v.listeners.materialize(m.RoutingKey) {
		v.mu.RLock()
		p.queues = p.queues[:0]
		clear(p.large)
		if v.exchanges[e.name] == e {
			p.routeFrom(e, m)
		}
		v.mu.RUnlock()
	}
	exp := int64(-1)
	if m.Properties.Expiration != "" {
		exp, _ = parseExpiration(m.Properties.Expiration)
	}
	stored := v.broker.prepareStore(m, p.queues)
	anyStored := false
	for _, q := range p.queues {
		_, _, _, s := q.enqueue(m, exp)
		anyStored = anyStored || s
	}
	if stored && !anyStored {
		v.broker.abandonStored(m)
	}
	clear(p.queues)
}

// DeclareReplyQueue sets up direct reply-to for owner: it returns a hidden
// queue whose name is the reply address to put in reply_to.
func (v *VHost) DeclareReplyQueue(owner Owner) *Queue {
	return v.declareInternalQueue(directReplyPrefix, owner)
}
