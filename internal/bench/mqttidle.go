package bench

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// idleConnectWorkers bounds the connects in flight at once: enough to keep
// the broker's accept loop busy, few enough not to overflow its listen
// backlog (a SYN dropped there costs a 1s retransmit and skews the rate).
const idleConnectWorkers = 32

// runMQTTIdle runs the mqtt-idle scenario: open cfg.Connections connections
// with keep-alive MQTTIdleKeepAlive, hold them for cfg.Duration without
// traffic, and report the connect rate and the broker's memory per
// connection.
func runMQTTIdle(r *run) (Result, error) {
	cfg := r.cfg
	res := r.newResult()
	idle := &IdleResult{Requested: cfg.Connections, KeepAlive: MQTTIdleKeepAlive}
	res.Idle = idle

	limit, err := raiseNoFile()
	if err != nil {
		r.warn("cannot raise the open-file limit: %v", err)
	}
	idle.NoFileLimit = limit
	if limit > 0 && limit < uint64(cfg.Connections)+64 {
		r.warn("the open-file limit is %d, below --connections %d: connects will fail with 'too many open files' (raise the hard limit: ulimit -Hn)", limit, cfg.Connections)
	}
	if cfg.BrokerPID > 0 {
		if idle.RSSBefore, err = ProcessRSS(cfg.BrokerPID); err != nil {
			r.warn("cannot read the broker's RSS: %v", err)
		}
	}

	clients := make([]mqtt.Client, cfg.Connections) // slot i is written by one worker only
	var lost atomic.Int64
	defer func() {
		r.stopAll()
		disconnectAll(clients)
	}()

	// Connect.
	var (
		next, connected, failed atomic.Int64
		errMu                   sync.Mutex
		firstErr                error
		wg                      sync.WaitGroup
	)
	t0 := time.Now()
	var lastAt atomic.Int64 // unix nanos of the latest CONNACK
	for range min(idleConnectWorkers, cfg.Connections) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !r.sendStopped.Load() {
				i := int(next.Add(1)) - 1
				if i >= cfg.Connections {
					return
				}
				name := fmt.Sprintf("idle connection %d", i)
				opts := r.mqttOptions(fmt.Sprintf("%s%s-i%d", namePrefix, r.id, i), MQTTIdleKeepAlive).
					SetConnectionLostHandler(func(mqtt.Client, error) {
						if !r.recvStopped.Load() {
							lost.Add(1)
						}
					})
				if len(cfg.SourceAddrs) > 0 {
					// Each source address has its own ephemeral ports.
					opts.SetDialer(&net.Dialer{Timeout: setupConnectTimeout,
						LocalAddr: &net.TCPAddr{IP: net.ParseIP(cfg.SourceAddrs[i%len(cfg.SourceAddrs)])}})
				}
				c := mqtt.NewClient(opts)
				if err := mqttConnect(name, c); err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					continue
				}
				clients[i] = c
				lastAt.Store(time.Now().UnixNano())
				connected.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(progressEvery)
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
			n := connected.Load()
			fmt.Fprintf(r.out, "%5s  connecting  %s connected (%s/s)  %s failed\n",
				fmt.Sprintf("%ds", int(now.Sub(t0).Seconds()+0.5)), FormatCount(uint64(n)),
				formatRate(float64(n-lastN)/now.Sub(last).Seconds()), FormatCount(uint64(failed.Load())))
			last, lastN = now, n
		}
	}
	idle.Connected = int(connected.Load())
	idle.Failed = int(failed.Load())
	if firstErr != nil {
		idle.FirstError = firstErr.Error()
		r.warn("%s of %s connects failed; the first: %v", FormatCount(uint64(idle.Failed)), FormatCount(uint64(cfg.Connections)), firstErr)
	}
	if idle.Connected > 0 {
		idle.ConnectTime = time.Unix(0, lastAt.Load()).Sub(t0)
		if s := idle.ConnectTime.Seconds(); s > 0 {
			idle.ConnectsPerSec = float64(idle.Connected) / s
		}
	}
	if idle.Connected == 0 {
		tick.Stop()
		return res, fmt.Errorf("no connection succeeded: %v", firstErr)
	}

	// Hold.
	var w window
	r.beginWindow(&w, zeroMeter{}, time.Now())
	hold := time.NewTimer(cfg.Duration)
	defer hold.Stop()
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
	tick.Stop()
	r.endWindow(&w, zeroMeter{}, time.Now())
	idle.Hold = w.end.Sub(w.start)
	idle.StillConnected = idle.Connected - int(lost.Load())
	if cfg.BrokerPID > 0 && idle.RSSBefore > 0 {
		if idle.RSSAfter, err = ProcessRSS(cfg.BrokerPID); err != nil {
			r.warn("cannot read the broker's RSS at the end of the hold: %v", err)
		} else {
			idle.RSSPerConn = (float64(idle.RSSAfter) - float64(idle.RSSBefore)) / float64(idle.Connected)
		}
	}
	if idle.StillConnected < idle.Connected {
		r.warn("%s connections were dropped while idle (keep-alive %v)", FormatCount(uint64(idle.Connected-idle.StillConnected)), MQTTIdleKeepAlive)
	}
	r.fill(&res, w)
	res.Warnings = r.takeWarnings()
	return res, nil
}

// zeroMeter is the meter of a scenario that sends nothing.
type zeroMeter struct{}

func (zeroMeter) counts() (sent, recv uint64) { return 0, 0 }
func (zeroMeter) latency(*Snapshot)           {}
