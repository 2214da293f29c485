package bench

import (
	"fmt"
	"net"
	"sync/atomic"

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
	r.beginIdle(idle, ": connects will fail with 'too many open files' (raise the hard limit: ulimit -Hn)")

	clients := make([]mqtt.Client, cfg.Connections) // slot i is written by one worker only
	var lost atomic.Int64
	defer func() {
		r.stopAll()
		disconnectAll(clients)
	}()
	err := r.connectIdle(idle, idleConnectWorkers, func(i int) error {
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
			return err
		}
		clients[i] = c
		return nil
	})
	if err != nil {
		return res, err
	}
	w := r.holdIdle(idle, &lost, fmt.Sprintf(" (keep-alive %v)", MQTTIdleKeepAlive))
	r.fill(&res, w)
	res.Warnings = r.takeWarnings()
	return res, nil
}

// zeroMeter is the meter of a scenario that sends nothing.
type zeroMeter struct{}

func (zeroMeter) counts() (sent, recv uint64) { return 0, 0 }
func (zeroMeter) latency(*Snapshot)           {}
