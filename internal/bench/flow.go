package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// producer publishes benchmark messages on its own connection.
type producer struct {
	r        *run
	id       int
	cn       *conn
	exchange string
	key      string
	groups   []int   // indexes of the queues its messages are routed to
	rate     float64 // msgs/s, 0 = unlimited
	body     []byte
	sent     atomic.Uint64

	// Publisher confirms (nil confirms = off). Confirmations arrive in
	// delivery-tag order (the client library resequences them), so the
	// confirmed tags always form a prefix 1..confirmed.
	confirms    chan amqp.Confirmation
	confirmed   atomic.Uint64 // highest confirmed delivery tag
	signal      chan struct{} // poked after each confirmation
	sendTimes   []atomic.Int64
	confirmHist [2]*Histogram
	confirmDone chan struct{}
	acked       uint64   // owned by confirmLoop until confirmDone
	nacked      []uint64 // sequence numbers; owned by confirmLoop until confirmDone
}

func newProducer(r *run, id int, exchange, key string, groups []int, rate float64) (*producer, error) {
	cn, err := r.dial(fmt.Sprintf("producer %d", id))
	if err != nil {
		return nil, err
	}
	p := &producer{r: r, id: id, cn: cn, exchange: exchange, key: key, groups: groups, rate: rate, body: NewBody(r.cfg.Size)}
	if r.cfg.Confirm {
		if err := cn.ch.Confirm(false); err != nil {
			return nil, brokerError(cn.name, "enabling publisher confirms", err)
		}
		w := r.cfg.ConfirmWindow
		p.confirms = cn.ch.NotifyPublish(make(chan amqp.Confirmation, w+1))
		p.signal = make(chan struct{}, 1)
		p.sendTimes = make([]atomic.Int64, w)
		p.confirmHist = [2]*Histogram{new(Histogram), new(Histogram)}
		p.confirmDone = make(chan struct{})
		go p.confirmLoop()
	}
	blocked := cn.c.NotifyBlocked(make(chan amqp.Blocking, 4))
	go func() {
		for b := range blocked {
			if b.Active {
				r.warn("broker blocked %s: %s (a resource alarm: memory or disk)", cn.name, b.Reason)
			}
		}
	}()
	return p, nil
}

func (p *producer) confirmLoop() {
	defer close(p.confirmDone)
	w := uint64(len(p.sendTimes))
	for c := range p.confirms {
		now := time.Now().UnixNano()
		sentAt := p.sendTimes[c.DeliveryTag%w].Load()
		phase := 1
		if sentAt < p.r.measureStart.Load() {
			phase = 0
		}
		p.confirmHist[phase].Record(time.Duration(now - sentAt))
		if c.Ack {
			p.acked++
		} else {
			p.nacked = append(p.nacked, c.DeliveryTag-1)
		}
		p.confirmed.Store(c.DeliveryTag)
		select {
		case p.signal <- struct{}{}:
		default:
		}
	}
}

// run publishes until told to stop, then waits for outstanding confirms.
func (p *producer) run(start <-chan struct{}) error {
	r := p.r
	select {
	case <-start:
	case <-r.stopSend:
		return nil
	}
	var pc *pacer
	if p.rate > 0 {
		pc = newPacer(p.rate, time.Now())
	}
	msg := amqp.Publishing{Body: p.body, DeliveryMode: r.deliveryMode()}
	window := uint64(r.cfg.ConfirmWindow)
	id := uint32(p.id)
	var seq uint64
loop:
	for !r.sendStopped.Load() {
		var intended int64
		if pc != nil {
			t, ok := pc.next(r.stopSend)
			if !ok {
				break
			}
			intended = t
		}
		if p.confirms != nil {
			for seq-p.confirmed.Load() >= window {
				select {
				case <-p.signal:
				case <-p.confirmDone:
					if r.sendStopped.Load() {
						break loop
					}
					return fmt.Errorf("%s: channel closed while waiting for publisher confirms: %w", p.cn.name, p.cn.reason(nil))
				case <-r.stopSend:
					break loop
				}
			}
		}
		now := time.Now().UnixNano()
		if intended == 0 {
			intended = now
		}
		EncodeHeader(p.body, Header{Producer: id, Seq: seq, SentAt: now, Intended: intended})
		if p.confirms != nil {
			p.sendTimes[(seq+1)%window].Store(now) // delivery tag = seq+1
		}
		if err := p.cn.ch.PublishWithContext(r.ctx, p.exchange, p.key, false, false, msg); err != nil {
			if r.sendStopped.Load() || r.ctx.Err() != nil {
				break
			}
			return fmt.Errorf("%s: publish failed: %w", p.cn.name, p.cn.reason(err))
		}
		seq++
		p.sent.Store(seq)
	}
	if p.confirms == nil {
		return nil
	}
	deadline := time.NewTimer(r.cfg.Drain)
	defer deadline.Stop()
	for p.confirmed.Load() < seq {
		select {
		case <-p.signal:
		case <-p.confirmDone:
			return nil
		case <-deadline.C:
			r.warn("%s: %d publishes still unconfirmed %v after stopping", p.cn.name, seq-p.confirmed.Load(), r.cfg.Drain)
			return nil
		case <-r.abort:
			return nil
		}
	}
	return nil
}

// consumer consumes one queue on its own connection and does the delivery
// accounting.
type consumer struct {
	r          *run
	id         int
	group      int // queue index
	cn         *conn
	tag        string
	deliveries <-chan amqp.Delivery
	tracker    *Tracker
	hist       [2]*Histogram // latency from actual send time: warmup, window
	sched      [2]*Histogram // latency from intended send time (paced runs only)
	received   atomic.Uint64
}

func newConsumer(r *run, id, group int, queue string) (*consumer, error) {
	cn, err := r.dial(fmt.Sprintf("consumer %d", id))
	if err != nil {
		return nil, err
	}
	cfg := r.cfg
	if !cfg.AutoAck && cfg.Prefetch > 0 {
		if err := cn.ch.Qos(cfg.Prefetch, 0, false); err != nil {
			return nil, brokerError(cn.name, "basic.qos", err)
		}
	}
	c := &consumer{
		r: r, id: id, group: group, cn: cn,
		tag:     fmt.Sprintf("%sc%d", namePrefix, id),
		tracker: NewTracker(cfg.Producers),
		hist:    [2]*Histogram{new(Histogram), new(Histogram)},
	}
	if cfg.Rate > 0 {
		c.sched = [2]*Histogram{new(Histogram), new(Histogram)}
	}
	c.deliveries, err = cn.ch.Consume(queue, c.tag, cfg.AutoAck, false, false, false, nil)
	if err != nil {
		return nil, brokerError(cn.name, "consuming from "+queue, err)
	}
	return c, nil
}

func (c *consumer) run() error {
	r := c.r
	ch := c.cn.ch
	manual := !r.cfg.AutoAck
	ackEvery := r.cfg.AckEvery
	pending, lastTag := 0, uint64(0)
	// With --ack-every N, a ticker flushes a partial batch so that a slow
	// trickle of messages is not held unacknowledged.
	flush := time.NewTicker(100 * time.Millisecond)
	defer flush.Stop()
	ackErr := func(err error) error {
		if r.recvStopped.Load() {
			return nil
		}
		return fmt.Errorf("%s: ack failed: %w", c.cn.name, c.cn.reason(err))
	}
	for {
		select {
		case d, ok := <-c.deliveries:
			if !ok {
				if r.recvStopped.Load() {
					return nil
				}
				return fmt.Errorf("%s: deliveries stopped: %v (the broker cancelled the consumer or closed the channel)", c.cn.name, c.cn.reason(nil))
			}
			now := time.Now().UnixNano()
			if h, valid := DecodeHeader(d.Body); valid {
				phase := 1
				if h.SentAt < r.measureStart.Load() {
					phase = 0
				}
				c.hist[phase].Record(time.Duration(now - h.SentAt))
				if c.sched[0] != nil {
					c.sched[phase].Record(time.Duration(now - h.Intended))
				}
				c.tracker.Observe(h.Producer, h.Seq, d.Redelivered)
			} else {
				c.tracker.Malformed++
			}
			c.received.Add(1)
			if !manual {
				continue
			}
			if ackEvery <= 1 {
				if err := ch.Ack(d.DeliveryTag, false); err != nil {
					return ackErr(err)
				}
				continue
			}
			pending++
			lastTag = d.DeliveryTag
			if pending >= ackEvery {
				pending = 0
				if err := ch.Ack(lastTag, true); err != nil {
					return ackErr(err)
				}
			}
		case <-flush.C:
			if pending > 0 {
				pending = 0
				if err := ch.Ack(lastTag, true); err != nil {
					return ackErr(err)
				}
			}
		case <-r.stopRecv:
			if pending > 0 {
				_ = ch.Ack(lastTag, true)
			}
			return nil
		}
	}
}

// flowMeter aggregates producer and consumer counters for the controller.
type flowMeter struct {
	producers []*producer
	consumers []*consumer
}

func (m *flowMeter) counts() (sent, recv uint64) {
	for _, p := range m.producers {
		sent += p.sent.Load()
	}
	for _, c := range m.consumers {
		recv += c.received.Load()
	}
	return sent, recv
}

func (m *flowMeter) latency(dst *Snapshot) {
	for _, c := range m.consumers {
		dst.Add(c.hist[0])
		dst.Add(c.hist[1])
	}
}

// expected returns how many deliveries should arrive given what has been sent.
func (m *flowMeter) expected() uint64 {
	var n uint64
	for _, p := range m.producers {
		n += p.sent.Load() * uint64(len(p.groups))
	}
	return n
}

// runFlow runs the throughput, fanout and latency scenarios: producers
// publish (to the default exchange or a fanout exchange), consumers consume
// queues, and every delivery is accounted for.
func runFlow(r *run) (res Result, err error) {
	cfg := r.cfg
	res = r.newResult()
	admin, err := r.dial("admin")
	if err != nil {
		return res, err
	}
	queues := make([]string, cfg.Queues)
	exchange := ""
	defer func() { r.teardown(admin, queues, exchange) }()

	fanout := cfg.Scenario == ScenarioFanout
	if fanout {
		exchange = r.name("fanout")
		if err := adminCall(admin, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(exchange, amqp.ExchangeFanout, false, true, false, false, nil)
		}); err != nil {
			exchange = ""
			return res, brokerError("admin", "declaring fanout exchange", err)
		}
	}
	for i := range queues {
		name := r.name(fmt.Sprintf("q%d", i))
		if err := adminCall(admin, func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare(name, cfg.Persistent, true, false, false, nil)
			return err
		}); err != nil {
			return res, brokerError("admin", "declaring queue "+name, err)
		}
		queues[i] = name
		if fanout {
			if err := adminCall(admin, func(ch *amqp.Channel) error {
				return ch.QueueBind(name, "", exchange, false, nil)
			}); err != nil {
				return res, brokerError("admin", "binding queue "+name+" to "+exchange, err)
			}
		}
	}

	m := &flowMeter{}
	for j := 0; j < cfg.Consumers; j++ {
		if err := r.ctx.Err(); err != nil {
			return res, err
		}
		g := j % cfg.Queues
		c, err := newConsumer(r, j, g, queues[g])
		if err != nil {
			return res, err
		}
		m.consumers = append(m.consumers, c)
	}
	for i := 0; i < cfg.Producers; i++ {
		if err := r.ctx.Err(); err != nil {
			return res, err
		}
		var rate float64
		if cfg.Rate > 0 {
			rate = float64(share(cfg.Rate, cfg.Producers, i))
		}
		var p *producer
		if fanout {
			groups := make([]int, cfg.Queues)
			for g := range groups {
				groups[g] = g
			}
			p, err = newProducer(r, i, exchange, "", groups, rate)
		} else {
			g := i % cfg.Queues
			p, err = newProducer(r, i, "", queues[g], []int{g}, rate)
		}
		if err != nil {
			return res, err
		}
		m.producers = append(m.producers, p)
	}

	var consumersWG, producersWG sync.WaitGroup
	for _, c := range m.consumers {
		r.goWorker(&consumersWG, c.run)
	}
	start := make(chan struct{})
	for _, p := range m.producers {
		r.goWorker(&producersWG, func() error { return p.run(start) })
	}

	prog := newProgress(r, m)
	w, err := r.measure(m, prog, func() { close(start) })
	if err != nil {
		return res, err
	}

	// Stop the producers; a producer stuck in a blocked write is cut off.
	r.stopSending()
	drainStart := time.Now()
	if !waitFor(&producersWG, cfg.Drain+2*time.Second) {
		r.warn("producers did not stop within %v (broker flow control?); closing their connections", cfg.Drain+2*time.Second)
		for _, p := range m.producers {
			p.cn.kill()
		}
		producersWG.Wait()
	}
	// Close producer connections now: the close handshake also guarantees the
	// broker has processed every publish before the drain is judged.
	producerConns := make([]*conn, len(m.producers))
	for i, p := range m.producers {
		producerConns[i] = p.cn
	}
	closeConns(producerConns)
	for _, p := range m.producers {
		if p.confirms != nil {
			select { // closed by the client library when the channel closes
			case <-p.confirmDone:
			case <-time.After(connectionCloseWaitFor):
				p.cn.kill()
				<-p.confirmDone
			}
		}
	}

	_, timedOut, err := r.drain(m, prog, m.expected)
	res.DrainTime = time.Since(drainStart)
	res.DrainTimedOut = timedOut
	if err != nil {
		return res, err
	}
	for _, q := range queues {
		_ = adminCall(admin, func(ch *amqp.Channel) error {
			qi, err := ch.QueueDeclarePassive(q, cfg.Persistent, true, false, false, nil)
			if err == nil {
				res.Backlog += uint64(qi.Messages)
			}
			return err
		})
	}

	r.stopReceiving()
	if !waitFor(&consumersWG, 3*time.Second) {
		for _, c := range m.consumers {
			c.cn.kill()
		}
		consumersWG.Wait()
	}

	// Accounting.
	groups := make([][]*Tracker, cfg.Queues)
	for _, c := range m.consumers {
		groups[c.group] = append(groups[c.group], c.tracker)
	}
	expects := make([][]Expect, cfg.Queues)
	for _, p := range m.producers {
		sent := p.sent.Load()
		e := Expect{Producer: uint32(p.id), Count: sent}
		res.Sent += sent
		if p.confirms != nil {
			e.Count = p.confirmed.Load()
			e.Exclude = p.nacked
			res.Confirmed += p.acked
			res.Nacked += uint64(len(p.nacked))
			res.Unconfirmed += sent - e.Count
		}
		for _, g := range p.groups {
			expects[g] = append(expects[g], e)
		}
	}
	var total GroupTally
	for g := range groups {
		total.Add(Tally(groups[g], expects[g]))
	}
	res.Expected = total.Expected
	res.Received = total.Received + total.Malformed
	res.Duplicated = total.Duplicated
	res.Redelivered = total.Redelivered
	res.OutOfOrder = total.OutOfOrder
	res.Malformed = total.Malformed
	res.Lost = total.Lost
	if res.Backlog > 0 {
		res.Lost -= min(res.Lost, res.Backlog)
		r.warn("%s messages were still queued when the drain ended (consumers slower than producers); "+
			"they are reported as left in queues, not lost — lower --rate, add --consumers or raise --drain", FormatCount(res.Backlog))
	}

	r.fill(&res, w)
	win, sched, conf := NewSnapshot(), NewSnapshot(), NewSnapshot()
	warm := NewSnapshot()
	for _, c := range m.consumers {
		warm.Add(c.hist[0])
		win.Add(c.hist[1])
		if c.sched[1] != nil {
			sched.Add(c.sched[1])
		}
	}
	res.LatencySummary = win.Summary()
	if res.Warmup != nil {
		res.Warmup.Latency = warm.Summary()
	}
	if cfg.Rate > 0 {
		s := sched.Summary()
		res.ScheduleLatency = &s
	}
	if cfg.Confirm {
		for _, p := range m.producers {
			conf.Add(p.confirmHist[1])
		}
		s := conf.Summary()
		res.ConfirmLatency = &s
	}
	if res.Lost > 0 && res.DrainTimedOut {
		r.warn("the drain timed out, so some of the %s lost messages may merely have been late (raise --drain)", FormatCount(res.Lost))
	}
	res.Warnings = r.takeWarnings()
	return res, nil
}

// teardown stops every worker, closes every connection and deletes the
// run's queues and exchange. Deletion errors are ignored: auto-delete
// objects may already be gone.
func (r *run) teardown(admin *conn, queues []string, exchange string) {
	r.stopAll()
	var others []*conn
	for _, cn := range r.conns {
		if cn != admin {
			others = append(others, cn)
		}
	}
	closeConns(others)
	if admin == nil || admin.closed {
		return
	}
	for _, q := range queues {
		if q != "" {
			_ = adminCall(admin, func(ch *amqp.Channel) error {
				_, err := ch.QueueDelete(q, false, false, false)
				return err
			})
		}
	}
	if exchange != "" {
		_ = adminCall(admin, func(ch *amqp.Channel) error {
			return ch.ExchangeDelete(exchange, false, false)
		})
	}
	closeConns([]*conn{admin})
}
