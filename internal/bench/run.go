package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Run executes the benchmark described by cfg and returns its figures.
// Progress lines (one per second) and warnings go to progress, which may be
// nil. Cancelling ctx ends the measured window early: the run then stops,
// drains and returns a Result with Interrupted set (and no error). An error
// means the run could not be carried out (connection refused, broker closed a
// channel, ...); the Result may then be partial.
func Run(ctx context.Context, cfg Config, progress io.Writer) (Result, error) {
	cfg, err := cfg.Normalize()
	if err != nil {
		return Result{}, err
	}
	if progress == nil {
		progress = io.Discard
	}
	r := newRun(ctx, cfg, progress)
	switch cfg.Scenario {
	case ScenarioRPC:
		return runRPC(r)
	case ScenarioMQTTFanout:
		return runMQTTFanout(r)
	case ScenarioMQTTIdle:
		return runMQTTIdle(r)
	case ScenarioWSFanout:
		return runWSFanout(r)
	case ScenarioWSIdle:
		return runWSIdle(r)
	case ScenarioStream:
		return runStreamScenario(r)
	case ScenarioRPCGateway:
		return runRPCGateway(r)
	case ScenarioRPCSDK:
		return runRPCSDK(r)
	case ScenarioNATSRPC:
		return runNATSRPC(r)
	case ScenarioStreamPublish, ScenarioStreamReplay, ScenarioStreamTail:
		return runStream(r)
	}
	return runFlow(r)
}

// run is the state shared by the controller and the workers of one run.
type run struct {
	ctx context.Context
	cfg Config
	id  string
	out *lockedWriter

	// measureStart is the unix-nano time the measured window began; messages
	// sent before it belong to the warmup. MaxInt64 until then.
	measureStart atomic.Int64

	sendStopped atomic.Bool   // senders were told to stop: their connection errors are expected
	recvStopped atomic.Bool   // receivers were told to stop: all worker errors are expected
	stopSend    chan struct{} // closed: producers/callers stop publishing
	stopRecv    chan struct{} // closed: consumers/servers stop
	abort       chan struct{} // closed: everyone exits immediately
	once        struct{ send, recv, abort sync.Once }
	errs        chan error // first fatal worker error

	conns []*conn // every connection, for teardown

	nextSource atomic.Uint64 // the next --source-addrs entry to dial from

	warnMu   sync.Mutex
	warnings []string
}

func newRun(ctx context.Context, cfg Config, out io.Writer) *run {
	var b [4]byte
	_, _ = rand.Read(b[:])
	r := &run{
		ctx:      ctx,
		cfg:      cfg,
		id:       hex.EncodeToString(b[:]),
		out:      &lockedWriter{w: out},
		stopSend: make(chan struct{}),
		stopRecv: make(chan struct{}),
		abort:    make(chan struct{}),
		errs:     make(chan error, 1),
	}
	r.measureStart.Store(math.MaxInt64)
	return r
}

// name returns a run-unique broker object name.
func (r *run) name(suffix string) string { return namePrefix + r.id + "-" + suffix }

func (r *run) dial(name string) (*conn, error) { return r.dialWith(name, false) }

// dialWith is dial; coalesce: see coalescingConn.
func (r *run) dialWith(name string, coalesce bool) (*conn, error) {
	cn, err := dialWith(r.cfg.URL, name, coalesce)
	if err != nil {
		return nil, err
	}
	r.conns = append(r.conns, cn)
	return cn, nil
}

// consumeQueue opens a connection named name that consumes queue under
// the consumer tag tag, with the configured acknowledgement mode and
// prefetch.
func (r *run) consumeQueue(name, queue, tag string) (*conn, <-chan amqp.Delivery, error) {
	cn, err := r.dial(name)
	if err != nil {
		return nil, nil, err
	}
	cfg := r.cfg
	if !cfg.AutoAck && cfg.Prefetch > 0 {
		if err := cn.ch.Qos(cfg.Prefetch, 0, false); err != nil {
			return nil, nil, brokerError(cn.name, "basic.qos", err)
		}
	}
	deliveries, err := cn.ch.Consume(queue, tag, cfg.AutoAck, false, false, false, nil)
	if err != nil {
		return nil, nil, brokerError(cn.name, "consuming from "+queue, err)
	}
	return cn, deliveries, nil
}

// fail records the first fatal worker error; the controller picks it up.
func (r *run) fail(err error) {
	if r.recvStopped.Load() {
		return
	}
	select {
	case r.errs <- err:
	default:
	}
}

func (r *run) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.warnMu.Lock()
	r.warnings = append(r.warnings, msg)
	r.warnMu.Unlock()
	fmt.Fprintf(r.out, "  warning: %s\n", msg)
}

func (r *run) stopSending() {
	r.sendStopped.Store(true)
	r.once.send.Do(func() { close(r.stopSend) })
}

func (r *run) stopReceiving() {
	r.stopSending()
	r.recvStopped.Store(true)
	r.once.recv.Do(func() { close(r.stopRecv) })
}

func (r *run) stopAll() {
	r.stopReceiving()
	r.once.abort.Do(func() { close(r.abort) })
}

// go runs a worker, reporting its error as fatal.
func (r *run) goWorker(wg *sync.WaitGroup, f func() error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := f(); err != nil {
			r.fail(err)
		}
	}()
}

// waitFor waits for wg up to d and reports whether it finished.
func waitFor(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// closeConns closes connections concurrently (each bounded by a deadline).
func closeConns(conns []*conn) {
	var wg sync.WaitGroup
	for _, cn := range conns {
		if cn == nil || cn.closed {
			continue
		}
		cn.closed = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cn.c.CloseDeadline(time.Now().Add(connectionCloseWaitFor)); err != nil {
				cn.kill()
			}
		}()
	}
	wg.Wait()
}

// withTimeout runs a synchronous broker call on cn, killing the connection if
// it does not return within d (the AMQP library has no call timeouts).
func withTimeout(cn *conn, d time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		cn.kill()
		return fmt.Errorf("%s: broker did not answer within %v", cn.name, d)
	}
}

// adminCall runs f on the admin connection's channel, reopening the channel
// first if an earlier call got it closed (e.g. a 404 on a passive declare).
func adminCall(admin *conn, f func(ch *amqp.Channel) error) error {
	return withTimeout(admin, 5*time.Second, func() error {
		admin.mu.Lock()
		defer admin.mu.Unlock()
		if admin.ch.IsClosed() {
			ch, err := admin.c.Channel()
			if err != nil {
				return err
			}
			admin.ch = ch
		}
		return f(admin.ch)
	})
}

// lockedWriter serialises progress output from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// window records the phase boundaries of a run.
type window struct {
	t0          time.Time
	warmElapsed time.Duration
	start, end  time.Time
	sent0       uint64 // counters at the window start (= warmup totals)
	recv0       uint64
	sent1       uint64 // counters at the window end
	recv1       uint64
	broker0     float64
	broker1     float64
	self0       float64
	self1       float64
	interrupted bool
}

func (r *run) beginWindow(w *window, m meter, now time.Time) {
	w.start = now
	w.sent0, w.recv0 = m.counts()
	r.measureStart.Store(now.UnixNano())
	w.self0, _ = ProcessCPU(0)
	if r.cfg.BrokerPID > 0 {
		w.broker0, _ = ProcessCPU(r.cfg.BrokerPID)
	}
}

func (r *run) endWindow(w *window, m meter, now time.Time) {
	w.end = now
	w.sent1, w.recv1 = m.counts()
	w.self1, _ = ProcessCPU(0)
	if r.cfg.BrokerPID > 0 {
		var err error
		if w.broker1, err = ProcessCPU(r.cfg.BrokerPID); err != nil {
			r.warn("cannot read the broker's CPU time at the end of the window (%v); did it exit?", err)
			w.broker1 = w.broker0
		}
	}
}

// measure releases the senders (startSend) and runs the warmup and the
// measured window, printing progress. It returns early with the first worker
// error, or with w.interrupted set when the run's context is cancelled.
func (r *run) measure(m meter, p *progress, startSend func()) (w window, err error) {
	w.t0 = time.Now()
	p.reset(w.t0)
	inWarmup := r.cfg.Warmup > 0
	first := r.cfg.Duration
	if inWarmup {
		first = r.cfg.Warmup
	} else {
		r.beginWindow(&w, m, w.t0)
	}
	startSend()
	phase := time.NewTimer(first)
	defer phase.Stop()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			label := ""
			if inWarmup {
				label = "warmup"
			}
			p.line(label)
		case now := <-phase.C:
			if inWarmup {
				inWarmup = false
				w.warmElapsed = now.Sub(w.t0)
				r.beginWindow(&w, m, time.Now())
				phase.Reset(r.cfg.Duration)
				continue
			}
			r.endWindow(&w, m, time.Now())
			return w, nil
		case err := <-r.errs:
			return w, err
		case <-r.ctx.Done():
			now := time.Now()
			if inWarmup {
				w.warmElapsed = now.Sub(w.t0)
				r.beginWindow(&w, m, now)
			}
			r.endWindow(&w, m, now)
			w.interrupted = true
			fmt.Fprintf(r.out, "  interrupted: stopping after %.1fs of measurement\n", now.Sub(w.start).Seconds())
			return w, nil
		}
	}
}

// drain waits after the senders stopped until target deliveries arrived,
// nothing arrived for drainIdle, or cfg.Drain passed.
func (r *run) drain(m meter, p *progress, target func() uint64) (timedOut bool, err error) {
	start := time.Now()
	_, last := m.counts()
	lastChange := start
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	nextLine := start.Add(progressEvery)
	for {
		select {
		case err := <-r.errs:
			return false, err
		case <-poll.C:
		}
		now := time.Now()
		_, recv := m.counts()
		switch {
		case recv >= target():
			return false, nil
		case recv != last:
			last, lastChange = recv, now
		case now.Sub(lastChange) >= drainIdle:
			return false, nil
		}
		if now.Sub(start) >= r.cfg.Drain {
			return true, nil
		}
		if now.After(nextLine) {
			p.line("drain")
			nextLine = nextLine.Add(progressEvery)
		}
	}
}

// progress prints the once-a-second progress lines.
type progress struct {
	r                  *run
	m                  meter
	t0, last           time.Time
	lastSent, lastRecv uint64
	cur, prev          *Snapshot
}

func newProgress(r *run, m meter) *progress {
	return &progress{r: r, m: m, cur: NewSnapshot(), prev: NewSnapshot()}
}

func (p *progress) reset(t0 time.Time) {
	p.t0, p.last = t0, t0
	p.lastSent, p.lastRecv = p.m.counts()
	p.prev.Reset()
	p.m.latency(p.prev)
}

func (p *progress) line(label string) {
	now := time.Now()
	sent, recv := p.m.counts()
	p.cur.Reset()
	p.m.latency(p.cur)
	dt := now.Sub(p.last).Seconds()
	if dt <= 0 {
		dt = 1
	}
	p99 := "-"
	if p.cur.Count() > p.prev.Count() {
		p99 = FormatLatency(p.cur.QuantileSince(p.prev, 0.99))
	}
	if label != "" {
		label += "  "
	}
	fmt.Fprintf(p.r.out, "%5s  %ssent %s (%s/s)  recv %s (%s/s)  p99 %s\n",
		fmt.Sprintf("%ds", int(now.Sub(p.t0).Seconds()+0.5)), label,
		FormatCount(sent), FormatCount(uint64(float64(sent-p.lastSent)/dt+0.5)),
		FormatCount(recv), FormatCount(uint64(float64(recv-p.lastRecv)/dt+0.5)), p99)
	p.last, p.lastSent, p.lastRecv = now, sent, recv
	p.cur, p.prev = p.prev, p.cur
}

// fill sets the fields of res derived from the window: rates, warmup figures
// and CPU use.
func (r *run) fill(res *Result, w window) {
	cfg := r.cfg
	res.Elapsed = w.end.Sub(w.start)
	res.WindowSent = w.sent1 - w.sent0
	res.WindowReceived = w.recv1 - w.recv0
	if secs := res.Elapsed.Seconds(); secs > 0 {
		res.MsgsPerSec = float64(res.WindowReceived) / secs
		res.SentPerSec = float64(res.WindowSent) / secs
		res.MBPerSec = res.MsgsPerSec * float64(cfg.Size) / 1e6
	}
	if cfg.Warmup > 0 {
		res.Warmup = &Phase{Elapsed: w.warmElapsed, Sent: w.sent0, Received: w.recv0}
		if s := w.warmElapsed.Seconds(); s > 0 {
			res.Warmup.MsgsPerSec = float64(w.recv0) / s
		}
	}
	res.BenchCPU = w.self1 - w.self0
	if cfg.BrokerPID > 0 {
		res.BrokerCPU = w.broker1 - w.broker0
		if res.BrokerCPU > 0 {
			res.MsgsPerBrokerCPUSec = float64(res.WindowReceived) / res.BrokerCPU
		}
	}
	res.Interrupted = w.interrupted
}

func (r *run) newResult() Result {
	cfg := r.cfg
	cfg.URL = redactURL(cfg.URL)
	return Result{
		Scenario:    r.cfg.Scenario,
		Description: Describe(r.cfg),
		Config:      cfg,
		RunID:       r.id,
	}
}

func (r *run) takeWarnings() []string {
	r.warnMu.Lock()
	defer r.warnMu.Unlock()
	return append([]string(nil), r.warnings...)
}

// deliveryMode is the AMQP delivery mode for the configured persistence.
func (r *run) deliveryMode() uint8 {
	if r.cfg.Persistent {
		return amqp.Persistent
	}
	return amqp.Transient
}

// pacer spaces sends on an absolute schedule: message n is due at
// base + n/rate. A sender that falls behind is not slowed down further
// (no sends are skipped), so backlog caused by the system under test shows up
// as latency from the intended send time instead of being omitted.
type pacer struct {
	base     int64   // unix nanos of message 0
	interval float64 // nanoseconds between messages
	n        uint64
	timer    *time.Timer
}

// newPacer returns a pacer for rate msgs/s from base, or nil for rate 0:
// an unpaced sender, whose every message is due at once (see nextSend).
func newPacer(rate float64, base time.Time) *pacer {
	if rate <= 0 {
		return nil
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pacer{base: base.UnixNano(), interval: 1e9 / rate, timer: t}
}

// next waits until the next message is due and returns its intended send
// time, or false if stop was closed first.
func (p *pacer) next(stop <-chan struct{}) (int64, bool) {
	due := p.base + int64(float64(p.n)*p.interval)
	p.n++
	if d := due - time.Now().UnixNano(); d > 0 {
		p.timer.Reset(time.Duration(d))
		select {
		case <-p.timer.C:
		case <-stop:
			return 0, false
		}
	}
	return due, true
}

// nextSend waits until the next message is due and returns its intended
// and actual send times (unix nanos; without a pacer both are now), or false
// if stop was closed first.
func (p *pacer) nextSend(stop <-chan struct{}) (intended, now int64, ok bool) {
	if p != nil {
		if intended, ok = p.next(stop); !ok {
			return 0, 0, false
		}
	}
	now = time.Now().UnixNano()
	if intended == 0 {
		intended = now
	}
	return intended, now, true
}

// share splits total into n near-equal parts and returns part i (0 when
// total is 0).
func share(total, n, i int) int {
	s := total / n
	if i < total%n {
		s++
	}
	return s
}
