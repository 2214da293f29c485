package bench

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// mqttOptions returns client options for one benchmark connection: MQTT
// 3.1.1, clean session, no automatic reconnect (a dropped connection is a
// failure to report, not something to paper over) and no connect retry.
func (r *run) mqttOptions(clientID string, keepAlive time.Duration) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().
		AddBroker(r.cfg.URL). // user and password are taken from the URL
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(setupConnectTimeout).
		SetKeepAlive(keepAlive).
		SetWriteTimeout(30 * time.Second).
		SetDialer(r.dialer())
}

// mqttConnect connects c, waiting at most setupConnectTimeout (+1s for the
// CONNACK after the dial).
func mqttConnect(name string, c mqtt.Client) error {
	tok := c.Connect()
	if !tok.WaitTimeout(setupConnectTimeout + time.Second) {
		c.Disconnect(0)
		return fmt.Errorf("%s: no CONNACK within %v", name, setupConnectTimeout+time.Second)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("%s: cannot connect: %w", name, err)
	}
	return nil
}

// mqttSubscriber is one mqtt-fanout subscriber connection and its accounting.
type mqttSubscriber struct {
	receiverAccount
	r      *run
	id     int
	name   string
	client mqtt.Client       // with --paho-subscribers (or a TLS/WebSocket URL)
	lean   *leanSubscription // otherwise
	mu     sync.Mutex        // guards the tracker: the client library may call the handler from different goroutines over time
}

// handle is the subscription's message handler. The client library calls
// it in arrival order (OrderMatters) and sends the PUBACK of a QoS 1 message
// only after it returns, so it must be quick and must not block.
func (s *mqttSubscriber) handle(_ mqtt.Client, m mqtt.Message) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	s.observe(s.r, m.Payload(), m.Duplicate(), now)
	s.mu.Unlock()
}

func newMQTTSubscriber(r *run, id int, topic string, latency *deliveryLatency, last *lastDelivery) (*mqttSubscriber, error) {
	s := &mqttSubscriber{
		r: r, id: id, name: fmt.Sprintf("subscriber %d", id),
		receiverAccount: receiverAccount{tracker: NewTracker(r.cfg.Producers), latency: latency, last: last},
	}
	clientID := fmt.Sprintf("%s%s-s%d", namePrefix, r.id, id)
	if leanSubscribers(r.cfg) {
		if err := s.connectLean(clientID, topic); err != nil {
			return nil, err
		}
		return s, nil
	}
	opts := r.mqttOptions(clientID, 30*time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			if !r.recvStopped.Load() {
				r.fail(fmt.Errorf("%s: connection lost: %v", s.name, err))
			}
		})
	s.client = mqtt.NewClient(opts)
	if err := mqttConnect(s.name, s.client); err != nil {
		return nil, err
	}
	qos := byte(r.cfg.QoS)
	tok := s.client.Subscribe(topic, qos, s.handle)
	if !tok.WaitTimeout(setupConnectTimeout) {
		s.client.Disconnect(0)
		return nil, fmt.Errorf("%s: no SUBACK for %s within %v", s.name, topic, setupConnectTimeout)
	}
	if err := tok.Error(); err != nil {
		s.client.Disconnect(0)
		return nil, fmt.Errorf("%s: subscribing to %s: %w", s.name, topic, err)
	}
	if st, ok := tok.(*mqtt.SubscribeToken); ok {
		switch granted := st.Result()[topic]; {
		case granted == 0x80:
			s.client.Disconnect(0)
			return nil, fmt.Errorf("%s: the broker refused the subscription to %s (SUBACK 0x80)", s.name, topic)
		case granted < qos && id == 0:
			r.warn("the broker granted QoS %d for a QoS %d subscription", granted, qos)
		}
	}
	return s, nil
}

// mqttPublisher publishes benchmark messages on its own connection. With
// QoS 1 up to ConfirmWindow publishes await their PUBACK at a time.
type mqttPublisher struct {
	r           *run
	id          int
	name        string
	topic       string
	subscribers int // each should receive every publish
	client      mqtt.Client
	rate        float64
	tmpl        []byte // body padding, copied into every message
	sent        atomic.Uint64

	// QoS 1 only (nil inflight = QoS 0).
	inflight       chan pubInFlight
	ackDone        chan struct{}
	acked          atomic.Uint64
	failed         []uint64 // sequence numbers whose publish failed; owned by ackLoop until ackDone
	confirmLatency *phasedHistogram

	last *lastDelivery // armed before each publish (nil = not measured)
}

type pubInFlight struct {
	seq    uint64
	sentAt int64
	tok    mqtt.Token
}

// newMQTTPublisher connects a publisher; with QoS 1 it records the PUBACK
// latency in confirmLatency.
func newMQTTPublisher(r *run, id int, topic string, rate float64, confirmLatency *phasedHistogram) (*mqttPublisher, error) {
	p := &mqttPublisher{
		r: r, id: id, name: fmt.Sprintf("publisher %d", id), topic: topic, subscribers: r.cfg.Subscribers,
		rate: rate, tmpl: NewBody(r.cfg.Size),
	}
	opts := r.mqttOptions(fmt.Sprintf("%s%s-p%d", namePrefix, r.id, id), 30*time.Second).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			if !r.sendStopped.Load() {
				r.fail(fmt.Errorf("%s: connection lost: %v", p.name, err))
			}
		})
	p.client = mqtt.NewClient(opts)
	if err := mqttConnect(p.name, p.client); err != nil {
		return nil, err
	}
	if r.cfg.QoS > 0 {
		// The channel's capacity is the window: a full channel holds the
		// publisher back until the oldest publish is acknowledged.
		p.inflight = make(chan pubInFlight, r.cfg.ConfirmWindow)
		p.ackDone = make(chan struct{})
		p.confirmLatency = confirmLatency
		go p.ackLoop()
	}
	return p, nil
}

// ackLoop waits for the PUBACK of each QoS 1 publish in publish order (the
// broker acknowledges in that order too).
func (p *mqttPublisher) ackLoop() {
	defer close(p.ackDone)
	for f := range p.inflight {
		select {
		case <-f.tok.Done():
		case <-p.r.abort:
			p.failed = append(p.failed, f.seq)
			continue
		}
		if f.tok.Error() != nil {
			p.failed = append(p.failed, f.seq)
			continue
		}
		p.confirmLatency.record(p.r, f.sentAt, time.Now().UnixNano())
		p.acked.Add(1)
	}
}

// run publishes until told to stop; with QoS 1 it then waits (at most
// --drain) for the outstanding PUBACKs.
func (p *mqttPublisher) run(start <-chan struct{}) error {
	r := p.r
	if p.inflight != nil {
		defer func() {
			close(p.inflight)
			select {
			case <-p.ackDone:
			case <-time.After(r.cfg.Drain):
				r.warn("%s: %d publishes still unacknowledged %v after stopping", p.name, p.sent.Load()-p.acked.Load(), r.cfg.Drain)
				// Disconnecting completes the outstanding tokens with an error.
				p.client.Disconnect(0)
				<-p.ackDone
			}
		}()
	}
	select {
	case <-start:
	case <-r.stopSend:
		return nil
	}
	pc := newPacer(p.rate, time.Now())
	qos := byte(r.cfg.QoS)
	id := uint32(p.id)
	var seq uint64
	for !r.sendStopped.Load() {
		// The client library keeps a reference to the payload until the
		// packet is written (QoS 0) or acknowledged (QoS 1), so every
		// message needs its own buffer.
		body := make([]byte, len(p.tmpl))
		copy(body, p.tmpl)
		intended, now, ok := pc.nextSend(r.stopSend)
		if !ok {
			break
		}
		EncodeHeader(body, Header{Producer: id, Seq: seq, SentAt: now, Intended: intended})
		p.last.arm(r, seq, now)
		tok := p.client.Publish(p.topic, qos, false, body)
		if p.inflight != nil {
			f := pubInFlight{seq: seq, sentAt: now, tok: tok}
			select {
			case p.inflight <- f:
			case <-r.stopSend:
				// The window is full and the run is over: give the broker
				// --drain to acknowledge, then disconnect, which fails the
				// outstanding publishes and so makes room.
				t := time.NewTimer(r.cfg.Drain)
				select {
				case p.inflight <- f:
				case <-t.C:
					p.client.Disconnect(0)
					p.inflight <- f
				}
				t.Stop()
			}
		} else {
			select {
			case <-tok.Done():
				if err := tok.Error(); err != nil {
					if r.sendStopped.Load() || r.ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("%s: publish failed: %w", p.name, err)
				}
			default: // QoS 0: still being written; a lost connection is reported by the handler
			}
		}
		seq++
		p.sent.Store(seq)
	}
	return nil
}

func (p *mqttPublisher) sentCount() uint64            { return p.sent.Load() }
func (p *mqttPublisher) deliveriesPerMessage() uint64 { return uint64(p.subscribers) }

// runMQTTFanout runs the mqtt-fanout scenario: publishers publish to one
// topic that every subscriber subscribed to.
func runMQTTFanout(r *run) (res Result, err error) {
	cfg := r.cfg
	res = r.newResult()
	topic := "herald-bench/" + r.id + "/fanout"
	m := &trafficMeter[*mqttPublisher, *mqttSubscriber]{scheduleLatency: cfg.Rate > 0, confirmLatency: cfg.QoS > 0}
	var pubWG sync.WaitGroup
	defer func() {
		r.stopAll()
		// On an early return the publishers may still be running; they
		// stop at the next message (or after --drain awaiting PUBACKs).
		waitFor(&pubWG, cfg.Drain+2*time.Second)
		var clients []mqtt.Client
		for _, p := range m.senders {
			clients = append(clients, p.client)
		}
		disconnectAll(clients)
		disconnectSubscribers(m.receivers)
	}()

	if limit, err := raiseNoFile(); err != nil || limit < uint64(cfg.Subscribers)+64 {
		r.warn("the open-file limit is %d, below the %d sockets needed (%v)", limit, cfg.Subscribers+64, err)
	}
	var last *lastDelivery
	if cfg.Producers == 1 {
		last = newLastDelivery(cfg.Subscribers)
	}
	// Up to fanoutShards subscribers have a latency recorder each; beyond,
	// they share them (one each would cost ~120 KiB a subscriber).
	shards := make([]*deliveryLatency, min(cfg.Subscribers, fanoutShards))
	for i := range shards {
		shards[i] = m.newDeliveryLatency()
	}
	t0 := time.Now()
	subs, err := connectSubscribers(r, cfg.Subscribers, func(i int) (*mqttSubscriber, error) {
		return newMQTTSubscriber(r, i, topic, shards[i%len(shards)], last)
	})
	m.receivers = subs
	if err != nil {
		return res, err
	}
	if cfg.Subscribers > fanoutShards {
		fmt.Fprintf(r.out, "  %s subscribers connected and subscribed in %.1fs\n", FormatCount(uint64(len(subs))), time.Since(t0).Seconds())
	}
	for i := 0; i < cfg.Producers; i++ {
		rate := float64(share(cfg.Rate, cfg.Producers, i))
		p, err := newMQTTPublisher(r, i, topic, rate, m.newConfirmLatency())
		if err != nil {
			return res, err
		}
		p.last = last
		m.senders = append(m.senders, p)
	}

	w, err := m.runSenders(r, &pubWG)
	if err != nil {
		return res, err
	}
	r.stopSending()
	drainStart := time.Now()
	if !waitFor(&pubWG, 2*cfg.Drain+2*time.Second) {
		return res, errors.New("publishers did not stop (blocked in the client library?)")
	}
	if err := m.awaitInFlight(r, &res, drainStart); err != nil {
		return res, err
	}
	r.stopReceiving()
	// Disconnecting first stops the handlers, so the trackers are final.
	disconnectSubscribers(m.receivers)

	var expects []Expect
	for _, p := range m.senders {
		sent := p.sent.Load()
		res.Sent += sent
		e := Expect{Producer: uint32(p.id), Count: sent}
		if p.inflight != nil {
			e.Exclude = p.failed // ackDone was closed by run: safe to read
			res.Confirmed += p.acked.Load()
			res.Nacked += uint64(len(p.failed))
		}
		expects = append(expects, e)
	}
	trackers := make([]*Tracker, len(m.receivers))
	for i, s := range m.receivers {
		s.mu.Lock()
		trackers[i] = s.tracker
		s.mu.Unlock()
	}
	total, per := tallySubscribers(trackers, expects)
	res.PerSubscriber = per
	res.setDeliveryCounts(total)

	r.fill(&res, w)
	m.fillLatency(&res)
	res.LastDelivery = last.result()
	if res.Lost > 0 {
		if cfg.QoS == 0 {
			r.warn("%s deliveries lost at QoS 0 (allowed by MQTT: the broker may drop QoS 0 messages for slow subscribers)", FormatCount(res.Lost))
		} else if res.DrainTimedOut {
			r.warn("the drain timed out, so some of the %s lost messages may merely have been late (raise --drain)", FormatCount(res.Lost))
		}
	}
	res.Warnings = r.takeWarnings()
	return res, nil
}

// fanoutShards is the number of latency recorders subscribers share.
const fanoutShards = 64

// subscribeWorkers bounds the subscribers connecting at once (see
// idleConnectWorkers).
const subscribeWorkers = 32

// connectSubscribers makes n subscribers with connect, up to
// subscribeWorkers at a time, and returns them in order; on the first
// error it stops and returns those made so far (for the teardown).
func connectSubscribers(r *run, n int, connect func(i int) (*mqttSubscriber, error)) ([]*mqttSubscriber, error) {
	subs := make([]*mqttSubscriber, n)
	var (
		next  atomic.Int64
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	for range min(subscribeWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				err := r.ctx.Err()
				if err == nil {
					subs[i], err = connect(i)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n)) // the other workers stop too
					return
				}
			}
		}()
	}
	wg.Wait()
	out := subs[:0]
	for _, s := range subs {
		if s != nil {
			out = append(out, s)
		}
	}
	return out, first
}

// disconnectSubscribers disconnects every subscriber (again: a second time
// does nothing) and returns when their handlers have stopped.
func disconnectSubscribers(subs []*mqttSubscriber) {
	var clients []mqtt.Client
	for _, s := range subs {
		switch {
		case s.client != nil:
			clients = append(clients, s.client)
		case s.lean != nil:
			s.lean.close()
		}
	}
	disconnectAll(clients)
}

// disconnectAll disconnects clients in parallel (a polite DISCONNECT each)
// and returns when every client's goroutines have stopped.
func disconnectAll(clients []mqtt.Client) {
	const workers = 64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, len(clients)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(clients) {
					return
				}
				if c := clients[i]; c != nil && c.IsConnectionOpen() {
					c.Disconnect(50)
				}
			}
		}()
	}
	wg.Wait()
}
