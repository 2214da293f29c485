package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SoakConfig is `herald bench soak`: every protocol's clients at once
// against one running broker for a long time, with every confirmed message
// accounted for and the broker's resources sampled as it goes.
type SoakConfig struct {
	AMQPURL  string // amqp://user:pass@host:port/vhost
	MQTTURL  string // mqtt://user:pass@host:port
	STOMPURL string // stomp://user:pass@host:port
	HTTPURL  string // http://user:pass@host:port: /ws and the management API

	Duration time.Duration
	// Interval is how often the broker's RSS, goroutines and files are
	// sampled.
	Interval time.Duration
	// Drain bounds the wait, once publishing stops, for every confirmed
	// message to arrive.
	Drain time.Duration
	// Rate is each main publisher's messages a second (the others run at
	// fractions of it).
	Rate int
	// Size is a message body's size in bytes.
	Size int
	// BrokerPID, when set, has RSS and open files read from /proc.
	BrokerPID int
	// Seed picks the reconnecting clients' random moments (0: random).
	Seed uint64
}

// DefaultSoakConfig is the broker on localhost's usual ports.
func DefaultSoakConfig() SoakConfig {
	return SoakConfig{
		AMQPURL:  DefaultURL,
		MQTTURL:  "mqtt://guest:guest@localhost:1883",
		STOMPURL: "stomp://guest:guest@localhost:61613",
		HTTPURL:  "http://guest:guest@localhost:15672",
		Duration: time.Hour,
		Interval: time.Minute,
		Drain:    time.Minute,
		Rate:     50,
		Size:     256,
	}
}

// SoakResult is the report of a soak.
type SoakResult struct {
	Config     SoakConfig    `json:"config"`
	Elapsed    time.Duration `json:"elapsed"`
	Confirmed  uint64        `json:"confirmed"` // confirmed publishes, all lanes' publishers
	Nacked     uint64        `json:"nacked"`    // refused by the broker (the slow consumer's full queue)
	Lost       uint64        `json:"lost"`
	Duplicates uint64        `json:"duplicates"`
	Delivered  uint64        `json:"delivered"` // distinct deliveries, all lanes
	Lanes      []LaneResult  `json:"lanes"`

	RPCCalls    uint64 `json:"rpc_calls"`
	RPCFailures uint64 `json:"rpc_failures"`
	Reconnects  uint64 `json:"reconnects"` // connect/round-trip/close cycles

	Errors      uint64   `json:"errors"`
	ErrorSample []string `json:"error_sample,omitempty"`

	Samples       []Sample `json:"samples"`
	RSSLevel      Verdict  `json:"rss_level"`
	GoroutineLvl  Verdict  `json:"goroutine_level"`
	FDStart       int      `json:"fd_start"`
	FDEnd         int      `json:"fd_end"`
	FDBack        bool     `json:"fd_back"`
	Interrupted   bool     `json:"interrupted"`
	UndrainedWait bool     `json:"undrained"` // the drain ran out of time
}

// Failed reports a soak that lost or duplicated a confirmed message.
func (r *SoakResult) Failed() bool { return r.Lost > 0 || r.Duplicates > 0 }

// soak is one run's state.
type soak struct {
	cfg  SoakConfig
	log  io.Writer
	rand *rand.Rand
	rmu  sync.Mutex

	// stop ends publishing; quit ends everything (after the drain).
	stop, quit     context.Context
	stopFn, quitFn context.CancelFunc
	draining       atomic.Bool

	ws        *wsDialer      // /ws connections
	wg        sync.WaitGroup // every client goroutine
	pubs      []*soakPublisher
	receivers []*soakReceiver

	errs     atomic.Uint64
	errMu    sync.Mutex
	errFirst []string

	rpcCalls, rpcFailures, reconnects atomic.Uint64
}

// fail records an error that is not a loss (a refused connection, an RPC
// timeout): counted and sampled.
func (s *soak) fail(who string, err error) {
	if err == nil || s.quit.Err() != nil {
		return
	}
	s.errs.Add(1)
	s.errMu.Lock()
	if len(s.errFirst) < 10 {
		s.errFirst = append(s.errFirst, who+": "+err.Error())
	}
	s.errMu.Unlock()
	s.progress("error: %s: %v", who, err)
}

func (s *soak) progress(format string, args ...any) {
	if s.log != nil {
		fmt.Fprintf(s.log, "soak %s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
	}
}

func (s *soak) randDuration(lo, hi time.Duration) time.Duration {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return lo + time.Duration(s.rand.Int64N(int64(hi-lo)+1))
}

// receiverNamed registers a receiver for the report.
func (s *soak) receiverNamed(name string) *soakReceiver {
	r := newSoakReceiver(name)
	s.receivers = append(s.receivers, r)
	return r
}

// RunSoak runs a soak and reports it; progress lines go to progress (nil:
// none). An error means the soak could not run (a broker unreachable at
// the start), not that it found a loss: see SoakResult.Failed.
func RunSoak(ctx context.Context, cfg SoakConfig, progress io.Writer) (*SoakResult, error) {
	if cfg.Duration <= 0 || cfg.Interval <= 0 || cfg.Rate <= 0 {
		return nil, errors.New("soak: --duration, --interval and --rate must be positive")
	}
	cfg.Size = max(cfg.Size, 32)
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &soak{cfg: cfg, log: progress, rand: rand.New(rand.NewPCG(seed, 20))}
	s.quit, s.quitFn = context.WithCancel(context.Background())
	defer s.quitFn()
	s.stop, s.stopFn = context.WithCancel(s.quit)
	defer s.stopFn()

	probe, err := newNodeProbe(cfg.HTTPURL, cfg.BrokerPID)
	if err != nil {
		return nil, err
	}
	first, err := probe.sample(ctx)
	if err != nil {
		return nil, fmt.Errorf("soak: the management API: %w", err)
	}
	res := &SoakResult{Config: cfg, FDStart: first.FDs, Samples: []Sample{first}}
	start := time.Now()
	s.progress("broker at start: RSS %s, %d goroutines, %d open files", formatMiB(first.RSS), first.Goroutines, first.FDs)

	if err := s.setup(); err != nil {
		s.stopFn()
		s.quitFn()
		s.wg.Wait()
		return nil, err
	}
	s.progress("clients running for %v", cfg.Duration)

	// The window: sample every interval until the duration (or ctx) ends.
	tick := time.NewTicker(cfg.Interval)
	end := time.NewTimer(cfg.Duration)
window:
	for {
		select {
		case <-ctx.Done():
			res.Interrupted = true
			break window
		case <-end.C:
			break window
		case <-tick.C:
			if sm, err := probe.sample(ctx); err != nil {
				s.fail("sample", err)
			} else {
				sm.At = time.Since(start)
				res.Samples = append(res.Samples, sm)
				s.progress("%v: RSS %s, %d goroutines, %d open files; %d confirmed, %d errors",
					sm.At.Round(time.Second), formatMiB(sm.RSS), sm.Goroutines, sm.FDs, s.confirmed(), s.errs.Load())
			}
		}
	}
	tick.Stop()
	end.Stop()

	// Publishing stops; confirms in flight arrive; consumers catch up.
	s.stopFn()
	s.draining.Store(true)
	s.progress("publishing stopped; draining (at most %v)", cfg.Drain)
	deadline := time.Now().Add(cfg.Drain)
	for s.missing() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	res.UndrainedWait = s.missing() > 0
	s.quitFn()
	s.wg.Wait()
	s.cleanup()
	res.Elapsed = time.Since(start)

	// Every client is gone: the broker's files should be back where they
	// started (closing sockets is asynchronous on the broker's side).
	res.FDEnd = -1
	for wait := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		sm, err := probe.sample(context.Background())
		if err == nil {
			res.FDEnd = sm.FDs
			if sm.FDs <= res.FDStart {
				break
			}
		}
		if time.Now().After(wait) {
			break
		}
	}
	res.FDBack = res.FDStart >= 0 && res.FDEnd >= 0 && res.FDEnd <= res.FDStart

	for _, p := range s.pubs {
		res.Confirmed += p.confirmed.Load()
		res.Nacked += p.nacked.Load()
	}
	for _, r := range s.receivers {
		for _, l := range r.lanes {
			lr := l.result()
			res.Lanes = append(res.Lanes, lr)
			res.Lost += lr.Lost
			res.Duplicates += lr.Duplicates
			res.Delivered += lr.Received
		}
	}
	sort.Slice(res.Lanes, func(i, j int) bool { return res.Lanes[i].Lane < res.Lanes[j].Lane })
	res.RPCCalls, res.RPCFailures, res.Reconnects = s.rpcCalls.Load(), s.rpcFailures.Load(), s.reconnects.Load()
	res.Errors = s.errs.Load()
	res.ErrorSample = s.errFirst

	var rss, gor []float64
	for _, sm := range res.Samples[1:] {
		rss = append(rss, float64(sm.RSS))
		gor = append(gor, float64(sm.Goroutines))
	}
	res.RSSLevel = levelVerdict(rss, 16<<20, 0.10, func(v float64) string { return formatMiB(uint64(v)) })
	res.GoroutineLvl = levelVerdict(gor, 50, 0.10, func(v float64) string { return fmt.Sprint(int(v)) })
	return res, nil
}

func (s *soak) confirmed() uint64 {
	var n uint64
	for _, p := range s.pubs {
		n += p.confirmed.Load()
	}
	return n
}

func (s *soak) missing() uint64 {
	var n uint64
	for _, r := range s.receivers {
		r.mu.Lock()
		for _, l := range r.lanes {
			n += l.missing()
		}
		r.mu.Unlock()
	}
	return n
}

// WriteSoakReport prints a result as a table.
func WriteSoakReport(w io.Writer, r *SoakResult) error {
	var b strings.Builder
	fmt.Fprintf(&b, "soak: %v (%v with the drain)\n", r.Config.Duration, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "  confirmed        %s (%s refused by a full queue, not counted)\n", FormatCount(r.Confirmed), FormatCount(r.Nacked))
	fmt.Fprintf(&b, "  delivered        %s distinct, across %d lanes\n", FormatCount(r.Delivered), len(r.Lanes))
	fmt.Fprintf(&b, "  lost             %s%s\n", FormatCount(r.Lost), mark(r.Lost == 0))
	fmt.Fprintf(&b, "  duplicates       %s (beyond the redelivered flag)%s\n", FormatCount(r.Duplicates), mark(r.Duplicates == 0))
	fmt.Fprintf(&b, "  rpc              %s calls, %s failed\n", FormatCount(r.RPCCalls), FormatCount(r.RPCFailures))
	fmt.Fprintf(&b, "  reconnects       %s cycles\n", FormatCount(r.Reconnects))
	fmt.Fprintf(&b, "  client errors    %s\n", FormatCount(r.Errors))
	for _, e := range r.ErrorSample {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	b.WriteString("  samples          at        RSS   goroutines  files\n")
	for _, sm := range r.Samples {
		fmt.Fprintf(&b, "                   %-8v %8s %8d %8d\n", sm.At.Round(time.Second), formatMiB(sm.RSS), sm.Goroutines, sm.FDs)
	}
	// Resource verdicts warn, they do not fail the run: before its first
	// garbage collection a Go broker's heap may grow to its first goal,
	// which a short soak cannot tell from a leak.
	fmt.Fprintf(&b, "  RSS              %s%s\n", r.RSSLevel.Why, warn(r.RSSLevel.Level))
	fmt.Fprintf(&b, "  goroutines       %s%s\n", r.GoroutineLvl.Why, warn(r.GoroutineLvl.Level))
	fmt.Fprintf(&b, "  open files       %d at start, %d at the end%s\n", r.FDStart, r.FDEnd, warn(r.FDBack))
	for _, l := range r.Lanes {
		if l.Lost > 0 || l.Duplicates > 0 {
			fmt.Fprintf(&b, "  lane %s: %d confirmed, %d received, %d lost, %d duplicates\n", l.Lane, l.Confirmed, l.Received, l.Lost, l.Duplicates)
		}
	}
	if r.UndrainedWait {
		b.WriteString("  the drain ran out of time with confirmed messages outstanding\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func warn(ok bool) string {
	if ok {
		return "   ok"
	}
	return "   WARN"
}

func mark(ok bool) string {
	if ok {
		return "   ok"
	}
	return "   FAIL"
}

func formatMiB(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
