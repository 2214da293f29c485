package app

import (
	"bufio"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/store"
	"github.com/heraldmq/herald/internal/web"
)

// Defaults of the resource alarms, as RabbitMQ's.
const (
	DefaultMemoryHighWatermark = 0.4      // of total RAM
	DefaultDiskFreeLimit       = 50 << 20 // bytes
	defaultAlarmInterval       = time.Second
)

// resourceMonitor raises the broker's memory and disk alarms. Its limits
// can be changed while it runs.
type resourceMonitor struct {
	s           *App
	memoryLimit atomic.Uint64 // bytes; 0 = off
	diskLimit   atomic.Uint64 // free bytes required; 0 = off
	interval    time.Duration
	// memoryHigh is the memory alarm as last checked (by run or admit);
	// memChecked is when admit last looked at the memory (unix nanos).
	memoryHigh atomic.Bool
	memChecked atomic.Int64
	memLast    atomic.Uint64 // memory in use at the last check
	// memoryUsed reads the process's memory use; a field so that tests
	// can drive the alarm.
	memoryUsed func() uint64
}

func newResourceMonitor(s *App, cfg Config) *resourceMonitor {
	m := &resourceMonitor{s: s, interval: cfg.AlarmCheckInterval, memoryUsed: memoryUsed}
	if m.interval <= 0 {
		m.interval = defaultAlarmInterval
	}
	wm := cfg.MemoryHighWatermark
	if wm == 0 {
		wm = DefaultMemoryHighWatermark
	}
	switch {
	case cfg.MemoryLimitBytes > 0 && wm > 0:
		m.memoryLimit.Store(cfg.MemoryLimitBytes)
	case wm > 0:
		if total := totalMemory(); total > 0 {
			m.memoryLimit.Store(uint64(float64(total) * wm))
		}
	}
	switch {
	case cfg.DiskFreeLimit == 0:
		m.diskLimit.Store(DefaultDiskFreeLimit)
	case cfg.DiskFreeLimit > 0:
		m.diskLimit.Store(uint64(cfg.DiskFreeLimit))
	}
	return m
}

// The memory is checked more often than the disk: a publisher flood (4
// KiB messages from a few connections) adds over 100 MiB a second, so a
// check once a second let RSS overshoot the watermark by 20-25 % before the
// alarm stopped the publishers, and again each time it cleared and let
// them go. So the memory is read every memInterval, and every nearInterval
// once it is past nearFraction of the watermark. Reading /proc/self/statm
// costs microseconds.
const (
	memInterval  = 100 * time.Millisecond
	nearInterval = 20 * time.Millisecond
	nearFraction = 0.5 // of the watermark: "near" from here up
)

// run checks the resources every interval (the memory more often, see
// memInterval) until the server stops.
func (m *resourceMonitor) run() {
	t := time.NewTimer(0)
	defer t.Stop()
	var lastFull time.Time
	for {
		select {
		case <-t.C:
		case <-m.s.lns.Context().Done():
			return
		}
		if now := time.Now(); now.Sub(lastFull) >= m.interval {
			lastFull = now
			m.check()
		} else {
			m.checkMemory()
		}
		next := min(m.interval, memInterval)
		if limit := m.memoryLimit.Load(); limit > 0 && float64(m.memLast.Load()) >= nearFraction*float64(limit) {
			next = min(next, nearInterval)
		}
		t.Reset(next)
	}
}

func (m *resourceMonitor) check() {
	b, log := m.s.broker, m.s.log
	m.checkMemory()
	if limit := m.diskLimit.Load(); limit > 0 {
		free, err := store.FreeSpace(m.s.cfg.DataDir)
		if err != nil {
			return
		}
		if b.SetAlarm("disk", free < limit) {
			if free < limit {
				log.Warn("disk alarm raised: publishers are blocked until free disk space is back above the limit", "free_bytes", free, "limit_bytes", limit, "data_dir", m.s.cfg.DataDir)
			} else {
				log.Info("disk alarm cleared", "free_bytes", free, "limit_bytes", limit)
			}
		}
	} else {
		b.SetAlarm("disk", false)
	}
}

// checkMemory raises or clears the memory alarm from the memory in use
// now. The monitor's tick and admit both call it.
func (m *resourceMonitor) checkMemory() {
	b, log := m.s.broker, m.s.log
	limit := m.memoryLimit.Load()
	if limit == 0 {
		m.memoryHigh.Store(false)
		b.SetAlarm("memory", false)
		return
	}
	used := m.memoryUsed()
	m.memLast.Store(used)
	m.memoryHigh.Store(used > limit)
	if b.SetAlarm("memory", used > limit) {
		if used > limit {
			log.Warn("memory alarm raised: publishers are blocked and new connections wait until memory use falls", "used_bytes", used, "limit_bytes", limit)
		} else {
			log.Info("memory alarm cleared", "used_bytes", used, "limit_bytes", limit)
		}
	}
}

// Connection admission. Memory mostly grows with messages, which the alarm
// holds back at the publishers, but also with connections: each costs
// buffers, a session and its queue, and 15,000 clients connecting at once
// add more in a second than the monitor's tick would notice in time. So
// the accept loops call admit with each new connection. It re-reads the
// memory in use when the last look is admitRecheck old (a burst of
// connects pays for one read of /proc/self/statm per admitRecheck, not one
// each), and then:
//   - below admitFraction of the watermark the connection is served at once;
//   - from there up to the watermark it waits admitSlow: the collector,
//     which the watermark drives (debug.SetMemoryLimit), makes RSS swing
//     around it, and connects let in at full speed whenever it dips just
//     below would carry the live set past it;
//   - while the alarm is raised it waits up to admitHold, looking again
//     every admitSlow, and goes on early once memory is below
//     admitFraction.
//
// Each listener thus takes in 1/admitHold connections a second while the
// alarm lasts; the others wait in the kernel's accept queue at no cost to
// the broker, and clients with a connect timeout give up. It slows rather
// than refuses: the connection that brings the consumer that would drain
// the queues must get in too. Connections already served are not touched
// (their publishers are held back as before).
const (
	admitRecheck  = 10 * time.Millisecond
	admitSlow     = 100 * time.Millisecond
	admitHold     = time.Second
	admitFraction = 0.9
)

// admit is the listeners' admission wait (server.Listeners.SetAdmission).
func (m *resourceMonitor) admit(ctx context.Context) {
	limit := m.memoryLimit.Load()
	if limit == 0 {
		return
	}
	now := time.Now().UnixNano()
	if last := m.memChecked.Load(); now-last >= int64(admitRecheck) && m.memChecked.CompareAndSwap(last, now) {
		m.checkMemory()
	}
	below := func() bool { return float64(m.memLast.Load()) < admitFraction*float64(limit) }
	if below() {
		return
	}
	wait := admitSlow
	if m.memoryHigh.Load() {
		wait = admitHold
	}
	t := time.NewTicker(admitSlow)
	defer t.Stop()
	for waited := time.Duration(0); waited < wait; waited += admitSlow {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if waited+admitSlow >= wait {
			return
		}
		m.memChecked.Store(time.Now().UnixNano())
		m.checkMemory()
		if below() {
			return
		}
	}
}

// SetDiskFreeLimit changes the free disk space below which publishers are
// blocked (0 turns the alarm off); it takes effect at the next check.
func (s *App) SetDiskFreeLimit(bytes uint64) { s.monitor.diskLimit.Store(bytes) }

// SetMemoryLimit changes the memory use above which publishers are blocked
// (0 turns the alarm off).
func (s *App) SetMemoryLimit(bytes uint64) { s.monitor.memoryLimit.Store(bytes) }

// nodeInfo is the web server's Config.Node: the monitor's figures for
// GET /api/nodes, read when asked.
func (s *App) nodeInfo() web.NodeInfo {
	info := web.NodeInfo{MemUsed: memoryUsed(), MemLimit: s.monitor.memoryLimit.Load(),
		DiskFreeLimit: s.monitor.diskLimit.Load()} // Started: zero, the web server started with the node
	if free, err := store.FreeSpace(s.cfg.DataDir); err == nil {
		info.DiskFree = free
	}
	return info
}

// MemoryLimit is the memory use above which the memory alarm blocks
// publishers (0 = off). cmd/herald gives it to the Go runtime as its soft
// memory limit, so that the collector works harder before the alarm trips.
func (s *App) MemoryLimit() uint64 { return s.monitor.memoryLimit.Load() }

// Alarms lists the raised resource alarms.
func (s *App) Alarms() []string { return s.broker.Alarms() }

// memoryUsed is the process's resident set size, or what the Go runtime
// has obtained from the OS where /proc is not available.
func memoryUsed() uint64 {
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			if pages, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				return pages * uint64(os.Getpagesize())
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Sys
}

// totalMemory reads MemTotal from /proc/meminfo (0 if unknown).
func totalMemory() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseUint(fields[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
