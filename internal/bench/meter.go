package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

// meter is what the controller needs from a scenario while it runs.
type meter interface {
	counts() (sent, recv uint64)
	// latency adds the current contents of every latency histogram (both
	// phases) to dst.
	latency(dst *Snapshot)
}

// The phases a message can be sent in, as indexes of a phasedHistogram.
const (
	warmupPhase = 0 // before the measured window began
	windowPhase = 1 // once it had begun
)

// phaseOf returns the phase of a message sent at sentAt (unix nanos).
func (r *run) phaseOf(sentAt int64) int {
	if sentAt < r.measureStart.Load() {
		return warmupPhase
	}
	return windowPhase
}

// phasedHistogram keeps one latency distribution per phase, so that the
// warmup's figures stay out of the window's.
type phasedHistogram [2]Histogram

// record adds the time from sentAt to now (unix nanos) to sentAt's phase.
func (h *phasedHistogram) record(r *run, sentAt, now int64) {
	h[r.phaseOf(sentAt)].Record(time.Duration(now - sentAt))
}

// deliveryLatency records the latency of the benchmark messages a receiver
// gets.
type deliveryLatency struct {
	fromSent     phasedHistogram  // from the actual send time
	fromIntended *phasedHistogram // from the intended send time; nil unless the meter reports it
}

// record adds one message with header h that arrived at now (unix nanos).
// Both distributions file it under the phase of its actual send time.
func (l *deliveryLatency) record(r *run, h Header, now int64) {
	phase := r.phaseOf(h.SentAt)
	l.fromSent[phase].Record(time.Duration(now - h.SentAt))
	if l.fromIntended != nil {
		l.fromIntended[phase].Record(time.Duration(now - h.Intended))
	}
}

// receiverAccount is a receiver's accounting of the benchmark messages that
// reach it. Its tracker is not safe for concurrent use: the receiver
// serialises observe.
type receiverAccount struct {
	tracker  *Tracker
	latency  *deliveryLatency
	last     *lastDelivery // broadcast scenarios: publish to last delivery (nil = not measured)
	received atomic.Uint64
}

// observe accounts one received body; one without a valid header counts
// as received and malformed.
func (a *receiverAccount) observe(r *run, body []byte, redelivered bool, now int64) {
	if h, ok := DecodeHeader(body); ok {
		a.latency.record(r, h, now)
		if !a.tracker.Observe(h.Producer, h.Seq, redelivered) && h.Producer == 0 {
			a.last.record(r, h.Seq, now)
		}
	} else {
		a.tracker.Malformed++
	}
	a.received.Add(1)
}

func (a *receiverAccount) receivedCount() uint64 { return a.received.Load() }

// A sender publishes benchmark messages.
type sender interface {
	// run publishes from when start is closed until the run stops the
	// senders.
	run(start <-chan struct{}) error
	// sentCount is how many messages it has published so far.
	sentCount() uint64
	// deliveriesPerMessage is how many deliveries each of its messages
	// should make (one per queue or subscriber it reaches).
	deliveriesPerMessage() uint64
}

// A receiver counts the benchmark messages (deliveries, replies) that reach
// it.
type receiver interface {
	receivedCount() uint64
}

// trafficMeter is the meter of a scenario whose senders publish benchmark
// messages and whose receivers account for them (an rpc caller is both).
// Its recorders come from newDeliveryLatency and newConfirmLatency, so that
// fillLatency reports every one of them exactly once.
type trafficMeter[S sender, R receiver] struct {
	senders   []S
	receivers []R

	// What is measured beyond the latency from the actual send time; set
	// before the recorders are made.
	scheduleLatency bool // from the intended send time (paced runs)
	confirmLatency  bool // from the publish to the broker's acknowledgement

	deliveryLatencies []*deliveryLatency
	confirmLatencies  []*phasedHistogram

	progress *progress // set by runSenders
}

// newDeliveryLatency returns a receive-side latency recorder that m
// reports. Receivers may share one (ws-fanout shards them).
func (m *trafficMeter[S, R]) newDeliveryLatency() *deliveryLatency {
	l := new(deliveryLatency)
	if m.scheduleLatency {
		l.fromIntended = new(phasedHistogram)
	}
	m.deliveryLatencies = append(m.deliveryLatencies, l)
	return l
}

// newConfirmLatency returns a sender's publish-to-acknowledgement latency
// recorder that m reports, or nil when m does not measure that latency.
func (m *trafficMeter[S, R]) newConfirmLatency() *phasedHistogram {
	if !m.confirmLatency {
		return nil
	}
	h := new(phasedHistogram)
	m.confirmLatencies = append(m.confirmLatencies, h)
	return h
}

func (m *trafficMeter[S, R]) counts() (sent, recv uint64) {
	for _, s := range m.senders {
		sent += s.sentCount()
	}
	for _, r := range m.receivers {
		recv += r.receivedCount()
	}
	return sent, recv
}

func (m *trafficMeter[S, R]) latency(dst *Snapshot) {
	for _, l := range m.deliveryLatencies {
		dst.Add(&l.fromSent[warmupPhase])
		dst.Add(&l.fromSent[windowPhase])
	}
}

// expected returns how many deliveries should arrive given what has been
// sent.
func (m *trafficMeter[S, R]) expected() uint64 {
	var n uint64
	for _, s := range m.senders {
		n += s.sentCount() * s.deliveriesPerMessage()
	}
	return n
}

// runSenders starts every sender as a worker in senders and measures the
// warmup and the window (see run.measure). The senders go on until the run
// stops them.
func (m *trafficMeter[S, R]) runSenders(r *run, senders *sync.WaitGroup) (window, error) {
	start := make(chan struct{})
	for _, s := range m.senders {
		r.goWorker(senders, func() error { return s.run(start) })
	}
	m.progress = newProgress(r, m)
	return r.measure(m, m.progress, func() { close(start) })
}

// awaitInFlight waits for the deliveries still in flight once the senders
// have stopped (see run.drain) and records in res how long the drain took,
// counted from stopped, and whether it gave up.
func (m *trafficMeter[S, R]) awaitInFlight(r *run, res *Result, stopped time.Time) error {
	timedOut, err := r.drain(m, m.progress, m.expected)
	res.DrainTime = time.Since(stopped)
	res.DrainTimedOut = timedOut
	return err
}

// fillLatency sets the latency figures of res, which run.fill has already
// given its warmup phase: the window's and the warmup's latency from the
// actual send time and, where measured, the window's latency from the
// intended send time and the confirm latency.
func (m *trafficMeter[S, R]) fillLatency(res *Result) {
	window, warmup := NewSnapshot(), NewSnapshot()
	intended := NewSnapshot()
	for _, l := range m.deliveryLatencies {
		warmup.Add(&l.fromSent[warmupPhase])
		window.Add(&l.fromSent[windowPhase])
		if l.fromIntended != nil {
			intended.Add(&l.fromIntended[windowPhase])
		}
	}
	res.LatencySummary = window.Summary()
	if res.Warmup != nil {
		res.Warmup.Latency = warmup.Summary()
	}
	if m.scheduleLatency {
		s := intended.Summary()
		res.ScheduleLatency = &s
	}
	if m.confirmLatency {
		confirm := NewSnapshot()
		for _, h := range m.confirmLatencies {
			confirm.Add(&h[windowPhase])
		}
		s := confirm.Summary()
		res.ConfirmLatency = &s
	}
}
