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
	confirms       chan amqp.Confirmation
	confirmed      atomic.Uint64 // highest confirmed delivery tag
	signal         chan struct{} // poked after each confirmation
	sendTimes      []atomic.Int64
	confirmLatency *phasedHistogram
	confirmDone    chan struct{}
	acked          uint64   // owned by confirmLoop until confirmDone
	nacked         []uint64 // sequence numbers; owned by confirmLoop until confirmDone
}

// newProducer connects a producer; with publisher confirms it records their
// latency in confirmLatency.
func newProducer(r *run, id int, exchange, key string, groups []int, rate float64, confirmLatency *phasedHistogram) (*producer, error) {
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
		p.confirmLatency = confirmLatency
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
		p.confirmLatency.record(p.r, p.sendTimes[c.DeliveryTag%w].Load(), now)
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
	pc := newPacer(p.rate, time.Now())
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

func (p *producer) sentCount() uint64            { return p.sent.Load() }
func (p *producer) deliveriesPerMessage() uint64 { return uint64(len(p.groups)) }

// consumer consumes one queue on its own connection and does the delivery
// accounting.
type consumer struct {
	receiverAccount
	r          *run
	id         int
	group      int // queue index
	cn         *conn
	tag        string
	deliveries <-chan amqp.Delivery
}

func newConsumer(r *run, id, group int, queue string, latency *deliveryLatency) (*consumer, error) {
	c := &consumer{
		r: r, id: id, group: group,
		tag:             fmt.Sprintf("%sc%d", namePrefix, id),
		receiverAccount: receiverAccount{tracker: NewTracker(r.cfg.Producers), latency: latency},
	}
	var err error
	c.cn, c.deliveries, err = r.consumeQueue(fmt.Sprintf("consumer %d", id), queue, c.tag)
	if err != nil {
		return nil, err
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
			c.observe(r, d.Body, d.Redelivered, time.Now().UnixNano())
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
			durable, autoDelete, args := queueDecl(cfg)
			_, err := ch.QueueDeclare(name, durable, autoDelete, false, false, args)
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

	m := &trafficMeter[*producer, *consumer]{scheduleLatency: cfg.Rate > 0, confirmLatency: cfg.Confirm}
	for j := 0; j < cfg.Consumers; j++ {
		if err := r.ctx.Err(); err != nil {
			return res, err
		}
		g := j % cfg.Queues
		c, err := newConsumer(r, j, g, queues[g], m.newDeliveryLatency())
		if err != nil {
			return res, err
		}
		m.receivers = append(m.receivers, c)
	}
	for i := 0; i < cfg.Producers; i++ {
		if err := r.ctx.Err(); err != nil {
			return res, err
		}
		rate := float64(share(cfg.Rate, cfg.Producers, i))
		var p *producer
		if fanout {
			groups := make([]int, cfg.Queues)
			for g := range groups {
				groups[g] = g
			}
			p, err = newProducer(r, i, exchange, "", groups, rate, m.newConfirmLatency())
		} else {
			g := i % cfg.Queues
			p, err = newProducer(r, i, "", queues[g], []int{g}, rate, m.newConfirmLatency())
		}
		if err != nil {
			return res, err
		}
		m.senders = append(m.senders, p)
	}

	var consumersWG, producersWG sync.WaitGroup
	for _, c := range m.receivers {
		r.goWorker(&consumersWG, c.run)
	}
	w, err := m.runSenders(r, &producersWG)
	if err != nil {
		return res, err
	}

	// Stop the producers; a producer stuck in a blocked write is cut off.
	r.stopSending()
	drainStart := time.Now()
	if !waitFor(&producersWG, cfg.Drain+2*time.Second) {
		r.warn("producers did not stop within %v (broker flow control?); closing their connections", cfg.Drain+2*time.Second)
		for _, p := range m.senders {
			p.cn.kill()
		}
		producersWG.Wait()
	}
	// Close producer connections now: the close handshake also guarantees the
	// broker has processed every publish before the drain is judged.
	producerConns := make([]*conn, len(m.senders))
	for i, p := range m.senders {
		producerConns[i] = p.cn
	}
	closeConns(producerConns)
	for _, p := range m.senders {
		if p.confirms != nil {
			select { // closed by the client library when the channel closes
			case <-p.confirmDone:
			case <-time.After(connectionCloseWaitFor):
				p.cn.kill()
				<-p.confirmDone
			}
		}
	}

	if err := m.awaitInFlight(r, &res, drainStart); err != nil {
		return res, err
	}
	for _, q := range queues {
		_ = adminCall(admin, func(ch *amqp.Channel) error {
			durable, autoDelete, args := queueDecl(cfg)
			qi, err := ch.QueueDeclarePassive(q, durable, autoDelete, false, false, args)
			if err == nil {
				res.Backlog += uint64(qi.Messages)
			}
			return err
		})
	}

	r.stopReceiving()
	if !waitFor(&consumersWG, 3*time.Second) {
		for _, c := range m.receivers {
			c.cn.kill()
		}
		consumersWG.Wait()
	}

	// Accounting.
	groups := make([][]*Tracker, cfg.Queues)
	for _, c := range m.receivers {
		groups[c.group] = append(groups[c.group], c.tracker)
	}
	expects := make([][]Expect, cfg.Queues)
	for _, p := range m.senders {
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
	res.setDeliveryCounts(total)
	if res.Backlog > 0 {
		res.Lost -= min(res.Lost, res.Backlog)
		r.warn("%s messages were still queued when the drain ended (consumers slower than producers); "+
			"they are reported as left in queues, not lost — lower --rate, add --consumers or raise --drain", FormatCount(res.Backlog))
	}

	r.fill(&res, w)
	m.fillLatency(&res)
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
