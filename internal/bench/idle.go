package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// What mqtt-idle and ws-idle share: open many connections, hold them with no
// traffic, report the connect rate and the broker's RSS per connection.

// beginIdle raises the open-file limit (warning when it stays below the
// connections asked for) and samples the broker's RSS before any connect.
func (r *run) beginIdle(idle *IdleResult, limitHint string) {
	limit, err := raiseNoFile()
	if err != nil {
		r.warn("cannot raise the open-file limit: %v", err)
	}
	idle.NoFileLimit = limit
	if n := r.cfg.Connections; limit > 0 && limit < uint64(n)+64 {
		r.warn("the open-file limit is %d, below --connections %d%s", limit, n, limitHint)
	}
	if r.cfg.BrokerPID > 0 {
		if idle.RSSBefore, err = ProcessRSS(r.cfg.BrokerPID); err != nil {
			r.warn("cannot read the broker's RSS: %v", err)
		}
	}
}

// connectIdle opens r.cfg.Connections connections, workers at a time;
// open(i) makes connection i. It prints progress, fills idle's connect
// figures and fails only when no connection succeeded.
func (r *run) connectIdle(idle *IdleResult, workers int, open func(i int) error) error {
	n := r.cfg.Connections
	var (
		next, connected, failed atomic.Int64
		lastAt                  atomic.Int64 // unix nanos of the latest connect
		errMu                   sync.Mutex
		firstErr                error
		wg                      sync.WaitGroup
	)
	cpu0 := r.brokerCPU()
	t0 := time.Now()
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !r.sendStopped.Load() {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := open(i); err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				lastAt.Store(time.Now().UnixNano())
				connected.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	last, lastN := t0, int64(0)
connecting:
	for {
		select {
		case <-done:
			break connecting
		case <-r.ctx.Done():
			r.stopSending() // workers stop taking new indexes
			<-done
			break connecting
		case now := <-tick.C:
			c := connected.Load()
			fmt.Fprintf(r.out, "%5s  connecting  %s connected (%s/s)  %s failed\n",
				fmt.Sprintf("%ds", int(now.Sub(t0).Seconds()+0.5)), FormatCount(uint64(c)),
				formatRate(float64(c-lastN)/now.Sub(last).Seconds()), FormatCount(uint64(failed.Load())))
			last, lastN = now, c
		}
	}
	idle.Connected, idle.Failed = int(connected.Load()), int(failed.Load())
	if firstErr != nil {
		idle.FirstError = firstErr.Error()
		r.warn("%s of %s connects failed; the first: %v", FormatCount(uint64(idle.Failed)), FormatCount(uint64(n)), firstErr)
	}
	if idle.Connected == 0 {
		return fmt.Errorf("no connection succeeded: %v", firstErr)
	}
	if cpu1 := r.brokerCPU(); cpu0 >= 0 && cpu1 >= 0 {
		idle.ConnectCPU = cpu1 - cpu0
	}
	idle.ConnectTime = time.Unix(0, lastAt.Load()).Sub(t0)
	if s := idle.ConnectTime.Seconds(); s > 0 {
		idle.ConnectsPerSec = float64(idle.Connected) / s
	}
	return nil
}

// brokerCPU is the broker's CPU time so far in seconds, -1 without
// --broker-pid or when it cannot be read.
func (r *run) brokerCPU() float64 {
	if r.cfg.BrokerPID <= 0 {
		return -1
	}
	s, err := ProcessCPU(r.cfg.BrokerPID)
	if err != nil {
		return -1
	}
	return s
}

// holdIdle holds the connections for r.cfg.Duration (or until
// interrupted), printing how many are still connected (lost counts those
// dropped), and fills idle's hold and memory figures. droppedWhy follows
// the warning about dropped connections.
func (r *run) holdIdle(idle *IdleResult, lost *atomic.Int64, droppedWhy string) window {
	var w window
	r.beginWindow(&w, zeroMeter{}, time.Now())
	hold := time.NewTimer(r.cfg.Duration)
	defer hold.Stop()
	tick := time.NewTicker(progressEvery)
	defer tick.Stop()
	if r.ctx.Err() != nil {
		w.interrupted = true
	} else {
	holding:
		for {
			select {
			case <-hold.C:
				break holding
			case <-r.ctx.Done():
				w.interrupted = true
				break holding
			case now := <-tick.C:
				fmt.Fprintf(r.out, "%5s  holding  %s still connected\n",
					fmt.Sprintf("%ds", int(now.Sub(w.start).Seconds()+0.5)), FormatCount(uint64(int64(idle.Connected)-lost.Load())))
			}
		}
	}
	r.endWindow(&w, zeroMeter{}, time.Now())
	idle.Hold = w.end.Sub(w.start)
	idle.StillConnected = idle.Connected - int(lost.Load())
	if r.cfg.BrokerPID > 0 && idle.RSSBefore > 0 {
		var err error
		if idle.RSSAfter, err = ProcessRSS(r.cfg.BrokerPID); err != nil {
			r.warn("cannot read the broker's RSS at the end of the hold: %v", err)
		} else {
			idle.RSSPerConn = (float64(idle.RSSAfter) - float64(idle.RSSBefore)) / float64(idle.Connected)
		}
	}
	if idle.StillConnected < idle.Connected {
		r.warn("%s connections were dropped while idle%s", FormatCount(uint64(idle.Connected-idle.StillConnected)), droppedWhy)
	}
	return w
}
