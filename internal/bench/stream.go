package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// runStream runs stream-publish, stream-replay or stream-tail against an
// AMQP stream or, for a nats:// URL, a JetStream stream.
func runStream(r *run) (res Result, err error) {
	res = r.newResult()
	var sys streamSys
	if IsNATSURL(r.cfg.URL) {
		sys, err = newJSStream(r)
	} else {
		sys, err = newAMQPStream(r)
	}
	if err != nil {
		return res, err
	}
	defer sys.close()
	switch r.cfg.Scenario {
	case ScenarioStreamReplay:
		return runStreamReplay(r, sys, res)
	case ScenarioStreamTail:
		return runStreamTail(r, sys, res)
	}
	return runStreamPublish(r, sys, res)
}

// pubLoop publishes into the stream until the senders stop (or limit
// messages, when limit > 0), keeping up to ConfirmWindow publishes
// unconfirmed; pc paces it (nil: as fast as the window allows). sent and
// confirmed are called per publish and per confirm.
func pubLoop(r *run, p streamPub, id int, pc *pacer, limit uint64, sent func(), confirmed func(sentAt, intended int64), nacked *atomic.Uint64) error {
	type inflight struct {
		wait             func() error
		sentAt, intended int64
	}
	pending := make(chan inflight, r.cfg.ConfirmWindow-1)
	collected := make(chan error, 1)
	go func() { // confirms come in publish order: wait for each in turn
		var first error
		for f := range pending {
			if err := f.wait(); err != nil {
				nacked.Add(1)
				if first == nil {
					first = err
				}
				continue
			}
			confirmed(f.sentAt, f.intended)
		}
		collected <- first
	}()
	body := NewBody(r.cfg.Size)
	var err error
	for seq := uint64(0); !r.sendStopped.Load() && (limit == 0 || seq < limit); seq++ {
		intended, now, ok := pc.nextSend(r.stopSend)
		if !ok {
			break
		}
		EncodeHeader(body, Header{Producer: uint32(id), Seq: seq, SentAt: now, Intended: intended})
		wait, perr := p.publish(body)
		if perr != nil {
			if !r.sendStopped.Load() {
				err = perr
			}
			break
		}
		sent()
		select {
		case pending <- inflight{wait, now, intended}:
		case <-r.abort:
			// Leave the collector to the connections' teardown.
			return nil
		}
	}
	close(pending)
	select {
	case cerr := <-collected:
		if err == nil && cerr != nil {
			r.warn("producer %d: a publish was refused: %v", id, cerr)
		}
	case <-r.abort:
	}
	return err
}

func runStreamPublish(r *run, sys streamSys, res Result) (Result, error) {
	cfg := r.cfg
	m := &refMeter{}
	var nacked atomic.Uint64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.Producers {
		p, err := sys.newPublisher(i)
		if err != nil {
			return res, err
		}
		r.goWorker(&wg, func() error {
			select {
			case <-start:
			case <-r.stopSend:
				return nil
			}
			return pubLoop(r, p, i, nil, 0, func() { m.sent.Add(1) },
				func(sentAt, _ int64) { m.done(r, sentAt, 0) }, &nacked)
		})
	}
	w, err := r.measure(m, newProgress(r, m), func() { close(start) })
	r.stopSending()
	drainStart := time.Now()
	if !waitFor(&wg, cfg.Drain) {
		res.DrainTimedOut = true
		r.warn("publishes still unconfirmed after --drain %v", cfg.Drain)
	}
	res.DrainTime = time.Since(drainStart)
	if err != nil {
		return res, err
	}
	r.fill(&res, w)
	m.fillLatency(&res)
	confirm := res.LatencySummary
	res.ConfirmLatency = &confirm
	res.Sent, res.Confirmed = m.counts()
	res.Nacked = nacked.Load()
	res.Unconfirmed = res.Sent - res.Confirmed - res.Nacked
	res.Expected, res.Received = res.Confirmed, res.Confirmed
	res.Warnings = r.takeWarnings()
	return res, nil
}

// runStreamTail: one paced producer, one consumer from the next offset;
// the figure is the publish-to-delivery latency.
func runStreamTail(r *run, sys streamSys, res Result) (Result, error) {
	cfg := r.cfg
	m := &refMeter{sched: &phasedHistogram{}}
	var confirmed, nacked, outOfOrder atomic.Uint64
	var wg sync.WaitGroup
	failed := make(chan error, 1)
	var next uint64 // consumer goroutine only
	r.goWorker(&wg, func() error {
		err := sys.consume(0, false, r.stopRecv, func(body []byte) bool {
			h, ok := DecodeHeader(body)
			if ok {
				if h.Seq != next {
					outOfOrder.Add(1)
				}
				next = h.Seq + 1
				m.done(r, h.SentAt, h.Intended)
			}
			return true
		})
		if err != nil {
			failed <- err
		}
		return err
	})
	p, err := sys.newPublisher(0)
	if err != nil {
		return res, err
	}
	// The consumer reads from the next offset: give it a moment to attach
	// (or fail) before the first publish.
	select {
	case err := <-failed:
		return res, err
	case <-time.After(500 * time.Millisecond):
	}
	start := make(chan struct{})
	var pubWG sync.WaitGroup
	r.goWorker(&pubWG, func() error {
		select {
		case <-start:
		case <-r.stopSend:
			return nil
		}
		return pubLoop(r, p, 0, newPacer(float64(cfg.Rate), time.Now()), 0, func() { m.sent.Add(1) },
			func(int64, int64) { confirmed.Add(1) }, &nacked)
	})
	w, err := r.measure(m, newProgress(r, m), func() { close(start) })
	r.stopSending()
	drainStart := time.Now()
	if err == nil {
		waitFor(&pubWG, cfg.Drain)
		res.DrainTimedOut, err = r.drain(m, newProgress(r, m), func() uint64 { return m.sent.Load() })
	}
	res.DrainTime = time.Since(drainStart)
	r.stopReceiving()
	waitFor(&wg, 3*time.Second)
	if err != nil {
		return res, err
	}
	r.fill(&res, w)
	m.fillLatency(&res)
	res.Sent, res.Received = m.counts()
	res.Confirmed, res.Nacked = confirmed.Load(), nacked.Load()
	res.Expected = res.Sent
	if res.Received < res.Sent {
		res.Lost = res.Sent - res.Received
	}
	res.OutOfOrder = outOfOrder.Load()
	res.Warnings = r.takeWarnings()
	return res, nil
}

// runStreamReplay publishes cfg.Messages, then has cfg.Consumers consumers
// read all of them from the first offset at once.
func runStreamReplay(r *run, sys streamSys, res Result) (Result, error) {
	cfg := r.cfg
	n := uint64(cfg.Messages)

	// Fill (reported as the warmup phase).
	var sent, confirmed, nacked atomic.Uint64
	p, err := sys.newPublisher(0)
	if err != nil {
		return res, err
	}
	fillStart := time.Now()
	fillErr := make(chan error, 1)
	go func() {
		fillErr <- pubLoop(r, p, 0, nil, n, func() { sent.Add(1) }, func(int64, int64) { confirmed.Add(1) }, &nacked)
	}()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	for filling := true; filling; {
		select {
		case err := <-fillErr:
			if err != nil {
				return res, err
			}
			filling = false
		case <-tick.C:
			el := time.Since(fillStart).Seconds()
			fmt.Fprintf(r.out, "%5ds  fill  confirmed %s of %s (%s/s)\n", int(el+0.5),
				FormatCount(confirmed.Load()), FormatCount(n), formatRate(float64(confirmed.Load())/el))
		case <-r.ctx.Done():
			r.stopAll()
			res.Interrupted = true
			return res, nil
		}
	}
	fillTime := time.Since(fillStart)
	res.Warmup = &Phase{Elapsed: fillTime, Sent: sent.Load(), Received: confirmed.Load(),
		MsgsPerSec: float64(confirmed.Load()) / fillTime.Seconds()}
	if nacked.Load() > 0 {
		return res, fmt.Errorf("%s of %s publishes were nacked while filling the stream", FormatCount(nacked.Load()), FormatCount(n))
	}
	fmt.Fprintf(r.out, "  filled %s messages in %.1fs (%s confirmed/s); replaying with %s\n",
		FormatCount(n), fillTime.Seconds(), formatRate(res.Warmup.MsgsPerSec), plural(cfg.Consumers, "consumer"))

	// Replay.
	var recv, outOfOrder atomic.Uint64
	finished := make([]time.Duration, cfg.Consumers)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	var self0, broker0 float64
	var t0 time.Time
	for i := range cfg.Consumers {
		r.goWorker(&wg, func() error {
			<-begin
			var got uint64
			err := sys.consume(i, true, r.stopRecv, func(body []byte) bool {
				if h, ok := DecodeHeader(body); !ok || h.Seq != got {
					outOfOrder.Add(1)
				}
				got++
				recv.Add(1)
				if got == n {
					finished[i] = time.Since(t0)
					return false
				}
				return true
			})
			return err
		})
	}
	self0, _ = ProcessCPU(0)
	if cfg.BrokerPID > 0 {
		broker0, _ = ProcessCPU(cfg.BrokerPID)
	}
	t0 = time.Now()
	close(begin)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	last, lastChange := uint64(0), time.Now()
	var failure error
replay:
	for {
		select {
		case <-done:
			break replay
		case err := <-r.errs:
			failure = err
			break replay
		case <-r.ctx.Done():
			res.Interrupted = true
			break replay
		case now := <-tick.C:
			got := recv.Load()
			fmt.Fprintf(r.out, "%5ds  replay  delivered %s of %s (%s/s)\n", int(now.Sub(t0).Seconds()+0.5),
				FormatCount(got), FormatCount(n*uint64(cfg.Consumers)), formatRate(float64(got)/now.Sub(t0).Seconds()))
			if got != last {
				last, lastChange = got, now
			} else if now.Sub(lastChange) > cfg.Drain {
				res.DrainTimedOut = true
				r.warn("no delivery for --drain %v: giving up", cfg.Drain)
				break replay
			}
		}
	}
	res.Elapsed = time.Since(t0)
	if !res.DrainTimedOut && !res.Interrupted && failure == nil {
		var slowest time.Duration
		for _, d := range finished {
			slowest = max(slowest, d)
		}
		res.Elapsed = slowest
	}
	if self1, err := ProcessCPU(0); err == nil {
		res.BenchCPU = self1 - self0
	}
	if cfg.BrokerPID > 0 {
		if broker1, err := ProcessCPU(cfg.BrokerPID); err == nil {
			res.BrokerCPU = broker1 - broker0
		}
	}
	r.stopReceiving()
	waitFor(&wg, 5*time.Second)
	if failure != nil {
		return res, failure
	}
	res.Sent, res.Confirmed = sent.Load(), confirmed.Load()
	res.Expected = n * uint64(cfg.Consumers)
	res.Received = recv.Load()
	res.WindowSent, res.WindowReceived = res.Sent, res.Received
	if res.Received < res.Expected {
		res.Lost = res.Expected - res.Received
	}
	res.OutOfOrder = outOfOrder.Load()
	if s := res.Elapsed.Seconds(); s > 0 {
		res.MsgsPerSec = float64(res.Received) / s
		res.MBPerSec = res.MsgsPerSec * float64(cfg.Size) / 1e6
		if res.BrokerCPU > 0 {
			res.MsgsPerBrokerCPUSec = float64(res.Received) / res.BrokerCPU
		}
	}
	res.Warnings = r.takeWarnings()
	return res, nil
}
