package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"
)

// CrashLoopConfig is `herald bench crash-loop`: start a herald binary on a
// data dir, drive persistent classic queues, MQTT persistent sessions and
// (when the build has them) streams with confirmed publishes, kill -9 it at
// a random moment, restart, N times; then account every confirmed message.
type CrashLoopConfig struct {
	Herald  string // the binary to run ("" = this one)
	DataDir string // "" = a temporary directory, removed at the end
	Cycles  int
	// MinUp and MaxUp bound the random moment of each kill, counted from
	// the clients' start.
	MinUp, MaxUp time.Duration
	// Rate is each publisher's messages a second.
	Rate int
	// Drain bounds the final wait for every confirmed message.
	Drain time.Duration
	Seed  uint64 // 0 = random
}

// DefaultCrashLoopConfig: 100 cycles of 0.3 to 2 seconds.
func DefaultCrashLoopConfig() CrashLoopConfig {
	return CrashLoopConfig{Cycles: 100, MinUp: 300 * time.Millisecond, MaxUp: 2 * time.Second, Rate: 500, Drain: 2 * time.Minute}
}

// CrashLoopResult is the account of a crash loop.
type CrashLoopResult struct {
	Cycles      int           `json:"cycles"`
	Elapsed     time.Duration `json:"elapsed"`
	Seed        uint64        `json:"seed"`
	Confirmed   uint64        `json:"confirmed"`
	Lost        uint64        `json:"lost"`
	Duplicates  uint64        `json:"duplicates"`
	Redelivered uint64        `json:"redelivered"`
	Lanes       []LaneResult  `json:"lanes"`
	// Streams says whether streams were driven, or why not.
	Streams      string        `json:"streams"`
	Quorum       bool          `json:"quorum"` // quorum queues were driven too
	ClientErrors uint64        `json:"client_errors"`
	LastError    string        `json:"last_error,omitempty"`
	Undrained    bool          `json:"undrained"`
	MaxRecovery  time.Duration `json:"max_recovery"` // start to ready, slowest
}

// Failed reports a lost or duplicated confirmed message.
func (r *CrashLoopResult) Failed() bool { return r.Lost > 0 || r.Duplicates > 0 }

const (
	crashClassicQueue = "herald-crash-classic"
	crashStreamQueue  = "herald-crash-stream"
	crashQuorumQueue  = "herald-crash-quorum"
	crashMQTTTopic    = "herald-crash/session"
	crashMQTTSub      = "herald-crash-sub" // the persistent session's client id
)

// crashPub is a publisher whose sequence numbers run on across cycles.
type crashPub struct {
	*soakPublisher
	next uint64
}

type crashLoop struct {
	cfg  CrashLoopConfig
	log  io.Writer
	rand *rand.Rand

	classic, quorum, session, stream *soakReceiver
	pubs                             []*soakPublisher
	classicPub, mqttPub              *crashPub
	quorumPub                        *crashPub // nil: no quorum queues
	streamPub                        *crashPub // nil: no streams

	errMu   sync.Mutex
	errs    uint64
	lastErr string
}

func (l *crashLoop) fail(who string, err error) {
	l.errMu.Lock()
	l.errs++
	l.lastErr = who + ": " + err.Error()
	l.errMu.Unlock()
}

func (l *crashLoop) progress(format string, args ...any) {
	if l.log != nil {
		fmt.Fprintf(l.log, "crash-loop %s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
}

func (l *crashLoop) newPub(name string, to *soakReceiver) *crashPub {
	p := &soakPublisher{name: name, rate: float64(l.cfg.Rate), lanes: []*lane{to.laneFor(name)}}
	l.pubs = append(l.pubs, p)
	return &crashPub{soakPublisher: p}
}

// RunCrashLoop runs the loop; an error means it could not run (the binary
// would not start), not that it found a loss (see CrashLoopResult.Failed).
func RunCrashLoop(ctx context.Context, cfg CrashLoopConfig, progress io.Writer) (*CrashLoopResult, error) {
	if cfg.Cycles <= 0 || cfg.Rate <= 0 || cfg.MinUp <= 0 || cfg.MaxUp < cfg.MinUp {
		return nil, errors.New("crash-loop: --cycles and --rate must be positive, and --min-up <= --max-up")
	}
	if cfg.Herald == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Herald = exe
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "herald-crash-loop-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	l := &crashLoop{cfg: cfg, log: progress, rand: rand.New(rand.NewPCG(seed, 9)),
		classic: newSoakReceiver("classic queue"), quorum: newSoakReceiver("quorum queue"), session: newSoakReceiver("mqtt persistent session"), stream: newSoakReceiver("stream")}
	l.classicPub = l.newPub("classic-pub", l.classic)
	l.mqttPub = l.newPub("mqtt-pub", l.session)
	res := &CrashLoopResult{Seed: seed}
	start := time.Now()

	for cycle := 1; cycle <= cfg.Cycles && ctx.Err() == nil; cycle++ {
		t0 := time.Now()
		p, err := startHeraldProc(cfg.Herald, cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("cycle %d: %w", cycle, err)
		}
		res.MaxRecovery = max(res.MaxRecovery, time.Since(t0))
		if cycle == 1 {
			if err := l.declare(p); err != nil {
				p.kill()
				return nil, err
			}
			res.Streams = "driven (x-queue-type stream accepted)"
			if l.streamPub == nil {
				res.Streams = "skipped: this build refuses x-queue-type stream"
			}
			res.Quorum = l.quorumPub != nil
		}
		up := l.cfg.MinUp + time.Duration(l.rand.Int64N(int64(l.cfg.MaxUp-l.cfg.MinUp)+1))
		cctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		l.runClients(cctx, &wg, p)
		select {
		case <-time.After(up):
		case <-ctx.Done():
		}
		p.kill()
		cancel()
		wg.Wait()
		l.progress("cycle %d/%d: killed after %v; confirmed so far %d", cycle, cfg.Cycles, up.Round(time.Millisecond), l.confirmed())
		res.Cycles = cycle
	}

	// The last start: consumers only, until every confirmed message is in.
	p, err := startHeraldProc(cfg.Herald, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("final start: %w", err)
	}
	res.Undrained = !l.drain(ctx, p)
	if err := p.stop(30 * time.Second); err != nil {
		l.fail("final stop", err)
	}
	res.Elapsed = time.Since(start)

	for _, r := range []*soakReceiver{l.classic, l.quorum, l.session, l.stream} {
		for _, ln := range r.lanes {
			lr := ln.result()
			res.Lanes = append(res.Lanes, lr)
			res.Confirmed += lr.Confirmed
			res.Lost += lr.Lost
			res.Duplicates += lr.Duplicates
			res.Redelivered += lr.Redelivered
		}
	}
	sort.Slice(res.Lanes, func(i, j int) bool { return res.Lanes[i].Lane < res.Lanes[j].Lane })
	res.ClientErrors, res.LastError = l.errs, l.lastErr
	return res, nil
}

func (l *crashLoop) confirmed() uint64 {
	var n uint64
	for _, p := range l.pubs {
		n += p.confirmed.Load()
	}
	return n
}

// declare creates the durable queues, probes streams, and opens the MQTT
// subscriber's persistent session, all before any publish.
func (l *crashLoop) declare(p *heraldProc) error {
	c, err := amqp.Dial("amqp://guest:guest@" + p.amqp + "/")
	if err != nil {
		return err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(crashClassicQueue, true, false, false, false, nil); err != nil {
		return err
	}
	// Quorum queues and streams are tried; a build without them is driven
	// without them (a refused declare closes the channel: a new one each).
	if _, err := ch.QueueDeclare(crashQuorumQueue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		l.progress("quorum queues skipped: %v", err)
	} else {
		l.quorumPub = l.newPub("quorum-pub", l.quorum)
	}
	if ch, err = c.Channel(); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(crashStreamQueue, true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		l.progress("streams skipped: %v", err)
	} else {
		l.streamPub = l.newPub("stream-pub", l.stream)
	}
	sub := mqtt.NewClient(l.mqttOptions(p, crashMQTTSub, false))
	if err := mqttConnect("crash-sub", sub); err != nil {
		return err
	}
	defer sub.Disconnect(250)
	tok := sub.Subscribe(crashMQTTTopic, 1, nil)
	if !tok.WaitTimeout(setupConnectTimeout) || tok.Error() != nil {
		return fmt.Errorf("mqtt subscribe: %v", tok.Error())
	}
	return nil
}

func (l *crashLoop) mqttOptions(p *heraldProc, id string, clean bool) *mqtt.ClientOptions {
	return mqtt.NewClientOptions().AddBroker("tcp://" + p.mqtt).SetUsername("guest").SetPassword("guest").
		SetClientID(id).SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(setupConnectTimeout).SetWriteTimeout(5 * time.Second).SetOrderMatters(false)
}

// runClients starts one cycle's clients; they end when ctx does (the
// kill) or when their connection dies with the broker.
func (l *crashLoop) runClients(ctx context.Context, wg *sync.WaitGroup, p *heraldProc) {
	url := "amqp://guest:guest@" + p.amqp + "/"
	wg.Go(func() { l.amqpConfirmed(ctx, url, l.classicPub, crashClassicQueue) })
	if l.streamPub != nil {
		wg.Go(func() { l.amqpConfirmed(ctx, url, l.streamPub, crashStreamQueue) })
	}
	wg.Go(func() { l.consumer(ctx, url, crashClassicQueue, l.classic) })
	if l.quorumPub != nil {
		wg.Go(func() { l.amqpConfirmed(ctx, url, l.quorumPub, crashQuorumQueue) })
		wg.Go(func() { l.consumer(ctx, url, crashQuorumQueue, l.quorum) })
	}
	wg.Go(func() { l.mqttPublisher(ctx, p) })
	wg.Go(func() { l.mqttSubscriber(ctx, p) })
}

// amqpConfirmed publishes persistent messages to queue with confirms; one
// not confirmed when the broker dies does not count.
func (l *crashLoop) amqpConfirmed(ctx context.Context, url string, p *crashPub, queue string) {
	c, err := amqp.Dial(url)
	if err != nil {
		l.fail(p.name, err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil || ch.Confirm(false) != nil {
		return
	}
	const window = 64
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	inflight := map[uint64]uint64{}
	var tag uint64
	start, first := time.Now(), p.next
	for ctx.Err() == nil {
		if !sleepUntil(ctx, start.Add(time.Duration(float64(p.next-first)/p.rate*float64(time.Second)))) {
			break
		}
		for len(inflight) >= window {
			cf, ok := <-confirms
			if !ok {
				return
			}
			if n, found := inflight[cf.DeliveryTag]; found {
				delete(inflight, cf.DeliveryTag)
				p.confirm(n, cf.Ack)
			}
		}
		n := p.next
		p.next++
		p.sent(n)
		if ch.Publish("", queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: soakBody(p.name, n, 64)}) != nil {
			return
		}
		tag++
		inflight[tag] = n
	drain:
		for {
			select {
			case cf, ok := <-confirms:
				if !ok {
					return
				}
				if n, found := inflight[cf.DeliveryTag]; found {
					delete(inflight, cf.DeliveryTag)
					p.confirm(n, cf.Ack)
				}
			default:
				break drain
			}
		}
	}
}

func sleepUntil(ctx context.Context, due time.Time) bool {
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// consumer consumes queue with manual acks.
func (l *crashLoop) consumer(ctx context.Context, url, queue string, r *soakReceiver) {
	c, err := amqp.Dial(url)
	if err != nil {
		l.fail("classic consumer", err)
		return
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil || ch.Qos(100, 0, false) != nil {
		return
	}
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-ds:
			if !ok {
				return
			}
			r.observe(d.Body, d.Redelivered)
			if d.Ack(false) != nil {
				return
			}
		}
	}
}

// mqttPublisher publishes at QoS 1; PUBACK is the confirm.
func (l *crashLoop) mqttPublisher(ctx context.Context, p *heraldProc) {
	c := mqtt.NewClient(l.mqttOptions(p, "herald-crash-pub", true))
	if err := mqttConnect("crash-pub", c); err != nil {
		l.fail("mqtt publisher", err)
		return
	}
	defer c.Disconnect(0)
	pub := l.mqttPub
	start, first := time.Now(), pub.next
	type pending struct {
		seq uint64
		tok mqtt.Token
	}
	window := make(chan pending, 64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for pp := range window {
			// A lost connection completes it with an error.
			if pp.tok.WaitTimeout(10*time.Second) && pp.tok.Error() == nil {
				pub.confirm(pp.seq, true)
			}
		}
	})
	defer wg.Wait()
	defer close(window)
	for c.IsConnectionOpen() && sleepUntil(ctx, start.Add(time.Duration(float64(pub.next-first)/pub.rate*float64(time.Second)))) {
		n := pub.next
		pub.next++
		pub.sent(n)
		tok := c.Publish(crashMQTTTopic, 1, false, soakBody(pub.name, n, 64))
		select {
		case window <- pending{n, tok}:
		case <-ctx.Done():
			return
		}
	}
}

// mqttSubscriber resumes the persistent session (clean session off) and
// accounts what it delivers; DUP is the redelivered flag.
func (l *crashLoop) mqttSubscriber(ctx context.Context, p *heraldProc) {
	opts := l.mqttOptions(p, crashMQTTSub, false)
	opts.SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { l.session.observe(m.Payload(), m.Duplicate()) })
	lost := make(chan struct{})
	opts.SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
	c := mqtt.NewClient(opts)
	if err := mqttConnect("crash-sub", c); err != nil {
		l.fail("mqtt subscriber", err)
		return
	}
	select {
	case <-ctx.Done():
	case <-lost:
	}
	c.Disconnect(0)
}

// drain runs the consumers on the last start until every confirmed
// message has arrived, then reads the whole stream; false if time ran out.
func (l *crashLoop) drain(ctx context.Context, p *heraldProc) bool {
	dctx, cancel := context.WithTimeout(ctx, l.cfg.Drain)
	defer cancel()
	url := "amqp://guest:guest@" + p.amqp + "/"
	cctx, stop := context.WithCancel(dctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.consumer(cctx, url, crashClassicQueue, l.classic) })
	if l.quorumPub != nil {
		wg.Go(func() { l.consumer(cctx, url, crashQuorumQueue, l.quorum) })
	}
	wg.Go(func() { l.mqttSubscriber(cctx, p) })
	missing := func() uint64 {
		var n uint64
		for _, r := range []*soakReceiver{l.classic, l.quorum, l.session} {
			for _, ln := range r.lanes {
				n += ln.missing()
			}
		}
		return n
	}
	for missing() > 0 && dctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	wg.Wait()
	ok := missing() == 0
	if l.streamPub != nil {
		ok = l.readStream(dctx, url) && ok
	}
	return ok
}

// readStream reads the stream from its first offset until every
// confirmed message is in, or nothing more comes for a few seconds.
func (l *crashLoop) readStream(ctx context.Context, url string) bool {
	c, err := amqp.Dial(url)
	if err != nil {
		l.fail("stream reader", err)
		return false
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil || ch.Qos(500, 0, false) != nil {
		return false
	}
	ds, err := ch.Consume(crashStreamQueue, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		l.fail("stream reader", err)
		return false
	}
	ln := l.stream.laneFor(l.streamPub.name)
	idle := time.NewTimer(5 * time.Second)
	defer idle.Stop()
	for ln.missing() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-idle.C:
			return false
		case d, ok := <-ds:
			if !ok {
				return false
			}
			// A stream is read, not consumed: reading it twice is not a
			// redelivery, so every repeat is a duplicate.
			l.stream.observe(d.Body, false)
			_ = d.Ack(false)
			idle.Reset(5 * time.Second)
		}
	}
	return true
}

// WriteCrashLoopReport prints a result as a table.
func WriteCrashLoopReport(w io.Writer, r *CrashLoopResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "crash loop: %d kill -9 cycles in %v (seed %d)\n", r.Cycles, r.Elapsed.Round(time.Second), r.Seed)
	fmt.Fprintf(&b, "  streams          %s\n", r.Streams)
	if r.Quorum {
		b.WriteString("  quorum queues    driven too\n")
	}
	fmt.Fprintf(&b, "  confirmed        %s\n", FormatCount(r.Confirmed))
	fmt.Fprintf(&b, "  lost             %s%s\n", FormatCount(r.Lost), mark(r.Lost == 0))
	fmt.Fprintf(&b, "  duplicates       %s (beyond the redelivered flag)%s\n", FormatCount(r.Duplicates), mark(r.Duplicates == 0))
	fmt.Fprintf(&b, "  redelivered      %s (received again, flagged)\n", FormatCount(r.Redelivered))
	fmt.Fprintf(&b, "  slowest restart  %v (start to ready)\n", r.MaxRecovery.Round(time.Millisecond))
	fmt.Fprintf(&b, "  client errors    %s (a client that could not connect or lost its connection early; the last: %s)\n", FormatCount(r.ClientErrors), r.LastError)
	for _, ln := range r.Lanes {
		fmt.Fprintf(&b, "  %-40s %9d confirmed %9d received %4d lost %4d duplicates %6d redelivered\n",
			ln.Lane, ln.Confirmed, ln.Received, ln.Lost, ln.Duplicates, ln.Redelivered)
	}
	if r.Undrained {
		b.WriteString("  the final drain ran out of time with confirmed messages outstanding\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
