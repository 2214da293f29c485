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
		SetWriteTimeout(30 * time.Second)
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
	r        *run
	id       int
	name     string
	client   mqtt.Client
	mu       sync.Mutex // guards tracker: the client library may call the handler from different goroutines over time
	tracker  *Tracker
	hist     [2]*Histogram // latency from actual send time: warmup, window
	sched    [2]*Histogram // latency from intended send time (paced runs only)
	received atomic.Uint64
}

// handle is the subscription's message handler. The client library calls
// it in arrival order (OrderMatters) and sends the PUBACK of a QoS 1 message
// only after it returns, so it must be quick and must not block.
func (s *mqttSubscriber) handle(_ mqtt.Client, m mqtt.Message) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	if h, ok := DecodeHeader(m.Payload()); ok {
		phase := 1
		if h.SentAt < s.r.measureStart.Load() {
			phase = 0
		}
		s.hist[phase].Record(time.Duration(now - h.SentAt))
		if s.sched[0] != nil {
			s.sched[phase].Record(time.Duration(now - h.Intended))
		}
		s.tracker.Observe(h.Producer, h.Seq, m.Duplicate())
	} else {
		s.tracker.Malformed++
	}
	s.mu.Unlock()
	s.received.Add(1)
}

func newMQTTSubscriber(r *run, id int, topic string) (*mqttSubscriber, error) {
	s := &mqttSubscriber{
		r: r, id: id, name: fmt.Sprintf("subscriber %d", id),
		tracker: NewTracker(r.cfg.Producers),
		hist:    [2]*Histogram{new(Histogram), new(Histogram)},
	}
	if r.cfg.Rate > 0 {
		s.sched = [2]*Histogram{new(Histogram), new(Histogram)}
	}
	opts := r.mqttOptions(fmt.Sprintf("%s%s-s%d", namePrefix, r.id, id), 30*time.Second).
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
	r      *run
	id     int
	name   string
	topic  string
	client mqtt.Client
	rate   float64
	tmpl   []byte // body padding, copied into every message
	sent   atomic.Uint64

	// QoS 1 only (nil inflight = QoS 0).
	inflight    chan pubInFlight
	ackDone     chan struct{}
	acked       atomic.Uint64
	failed      []uint64 // sequence numbers whose publish failed; owned by ackLoop until ackDone
	confirmHist [2]*Histogram
}

type pubInFlight struct {
	seq    uint64
	sentAt int64
	tok    mqtt.Token
}

func newMQTTPublisher(r *run, id int, topic string, rate float64) (*mqttPublisher, error) {
	p := &mqttPublisher{r: r, id: id, name: fmt.Sprintf("publisher %d", id), topic: topic, rate: rate, tmpl: NewBody(r.cfg.Size)}
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
		p.confirmHist = [2]*Histogram{new(Histogram), new(Histogram)}
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
		phase := 1
		if f.sentAt < p.r.measureStart.Load() {
			phase = 0
		}
		p.confirmHist[phase].Record(time.Duration(time.Now().UnixNano() - f.sentAt))
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
	var pc *pacer
	if p.rate > 0 {
		pc = newPacer(p.rate, time.Now())
	}
	qos := byte(r.cfg.QoS)
	id := uint32(p.id)
	var seq uint64
	for !r.sendStopped.Load() {
		var intended int64
		if pc != nil {
			t, ok := pc.next(r.stopSend)
			if !ok {
				break
			}
			intended = t
		}
		// The client library keeps a reference to the payload until the
		// packet is written (QoS 0) or acknowledged (QoS 1), so every
		// message needs its own buffer.
		body := make([]byte, len(p.tmpl))
		copy(body, p.tmpl)
		now := time.Now().UnixNano()
		if intended == 0 {
			intended = now
		}
		EncodeHeader(body, Header{Producer: id, Seq: seq, SentAt: now, Intended: intended})
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

// mqttMeter aggregates publisher and subscriber counters for the controller.
type mqttMeter struct {
	pubs []*mqttPublisher
	subs []*mqttSubscriber
}

func (m *mqttMeter) counts() (sent, recv uint64) {
	for _, p := range m.pubs {
		sent += p.sent.Load()
	}
	for _, s := range m.subs {
		recv += s.received.Load()
	}
	return sent, recv
}

func (m *mqttMeter) latency(dst *Snapshot) {
	for _, s := range m.subs {
		dst.Add(s.hist[0])
		dst.Add(s.hist[1])
	}
}

func (m *mqttMeter) expected() uint64 {
	var n uint64
	for _, p := range m.pubs {
		n += p.sent.Load()
	}
	return n * uint64(len(m.subs))
}

// tallySubscribers does the mqtt-fanout accounting: every subscriber should
// have received every expected message exactly once, so each one is tallied
// on its own (a message that reached 99 of 100 subscribers is lost once).
func tallySubscribers(trackers []*Tracker, expect []Expect) (GroupTally, []SubscriberTally) {
	var total GroupTally
	per := make([]SubscriberTally, len(trackers))
	for i, t := range trackers {
		g := Tally([]*Tracker{t}, expect)
		total.Add(g)
		per[i] = SubscriberTally{
			Subscriber: i, Expected: g.Expected, Received: g.Received,
			Lost: g.Lost, Duplicated: g.Duplicated, OutOfOrder: g.OutOfOrder, Malformed: g.Malformed,
		}
	}
	return total, per
}

// runMQTTFanout runs the mqtt-fanout scenario: publishers publish to one
// topic that every subscriber subscribed to.
func runMQTTFanout(r *run) (res Result, err error) {
	cfg := r.cfg
	res = r.newResult()
	topic := "herald-bench/" + r.id + "/fanout"
	m := &mqttMeter{}
	var pubWG sync.WaitGroup
	defer func() {
		r.stopAll()
		// On an early return the publishers may still be running; they
		// stop at the next message (or after --drain awaiting PUBACKs).
		waitFor(&pubWG, cfg.Drain+2*time.Second)
		var clients []mqtt.Client
		for _, p := range m.pubs {
			clients = append(clients, p.client)
		}
		for _, s := range m.subs {
			clients = append(clients, s.client)
		}
		disconnectAll(clients)
	}()

	for i := 0; i < cfg.Subscribers; i++ {
		if err := r.ctx.Err(); err != nil {
			return res, err
		}
		s, err := newMQTTSubscriber(r, i, topic)
		if err != nil {
			return res, err
		}
		m.subs = append(m.subs, s)
	}
	for i := 0; i < cfg.Producers; i++ {
		var rate float64
		if cfg.Rate > 0 {
			rate = float64(share(cfg.Rate, cfg.Producers, i))
		}
		p, err := newMQTTPublisher(r, i, topic, rate)
		if err != nil {
			return res, err
		}
		m.pubs = append(m.pubs, p)
	}

	start := make(chan struct{})
	for _, p := range m.pubs {
		r.goWorker(&pubWG, func() error { return p.run(start) })
	}
	prog := newProgress(r, m)
	w, err := r.measure(m, prog, func() { close(start) })
	if err != nil {
		return res, err
	}
	r.stopSending()
	drainStart := time.Now()
	if !waitFor(&pubWG, 2*cfg.Drain+2*time.Second) {
		return res, errors.New("publishers did not stop (blocked in the client library?)")
	}
	_, timedOut, err := r.drain(m, prog, m.expected)
	res.DrainTime = time.Since(drainStart)
	res.DrainTimedOut = timedOut
	if err != nil {
		return res, err
	}
	r.stopReceiving()
	var clients []mqtt.Client
	for _, s := range m.subs {
		clients = append(clients, s.client)
	}
	// Disconnecting first stops the handlers, so the trackers are final.
	disconnectAll(clients)

	var expects []Expect
	for _, p := range m.pubs {
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
	trackers := make([]*Tracker, len(m.subs))
	for i, s := range m.subs {
		s.mu.Lock()
		trackers[i] = s.tracker
		s.mu.Unlock()
	}
	total, per := tallySubscribers(trackers, expects)
	res.PerSubscriber = per
	res.Expected = total.Expected
	res.Received = total.Received + total.Malformed
	res.Duplicated = total.Duplicated
	res.Redelivered = total.Redelivered
	res.OutOfOrder = total.OutOfOrder
	res.Malformed = total.Malformed
	res.Lost = total.Lost

	r.fill(&res, w)
	win, warm, sched, conf := NewSnapshot(), NewSnapshot(), NewSnapshot(), NewSnapshot()
	for _, s := range m.subs {
		warm.Add(s.hist[0])
		win.Add(s.hist[1])
		if s.sched[1] != nil {
			sched.Add(s.sched[1])
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
	if cfg.QoS > 0 {
		for _, p := range m.pubs {
			conf.Add(p.confirmHist[1])
		}
		s := conf.Summary()
		res.ConfirmLatency = &s
	}
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
