package admin

import (
	"net/http"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/heraldmq/herald/internal/web"
)

type nodeJSON struct {
	Name          string `json:"name"`
	Type          string `json:"type"`
	Running       bool   `json:"running"`
	MemUsed       uint64 `json:"mem_used"`
	MemLimit      uint64 `json:"mem_limit"`
	MemAlarm      bool   `json:"mem_alarm"`
	DiskFree      uint64 `json:"disk_free"`
	DiskFreeLimit uint64 `json:"disk_free_limit"`
	DiskFreeAlarm bool   `json:"disk_free_alarm"`
	// FDUsed is omitted where /proc/self/fd cannot be read.
	FDUsed     *int   `json:"fd_used,omitempty"`
	ProcUsed   int    `json:"proc_used"` // goroutines: Herald's processes
	Uptime     int64  `json:"uptime"`    // milliseconds
	RunQueue   int    `json:"run_queue"`
	Processors int    `json:"processors"`
	RatesMode  string `json:"rates_mode"`
}

// nodeName is RabbitMQ's node name shape, "name@host".
func nodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "herald@" + host
}

func (s *Server) nodeJSON() nodeJSON {
	var info web.NodeInfo
	if s.cfg.Node != nil {
		info = s.cfg.Node()
	} else {
		// Without the server's monitor: what the Go runtime knows.
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		info.MemUsed = ms.Sys
	}
	started := info.Started
	if started.IsZero() {
		started = s.started
	}
	alarms := s.broker.Alarms()
	n := nodeJSON{Name: s.node, Type: "disc", Running: true,
		MemUsed: info.MemUsed, MemLimit: info.MemLimit, MemAlarm: slices.Contains(alarms, "memory"),
		DiskFree: info.DiskFree, DiskFreeLimit: info.DiskFreeLimit, DiskFreeAlarm: slices.Contains(alarms, "disk"),
		ProcUsed: runtime.NumGoroutine(), Uptime: time.Since(started).Milliseconds(),
		Processors: runtime.NumCPU(), RatesMode: "basic"}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		used := len(fds)
		n.FDUsed = &used
	}
	return n
}

// listNodes is GET /api/nodes: this node, or every node in cluster mode
// (cluster.go).
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	if s.cluster != nil {
		s.listClusterNodes(w, r)
		return
	}
	writeList(w, r, []nodeJSON{s.nodeJSON()}, "name")
}

func (s *Server) showNode(w http.ResponseWriter, r *http.Request) {
	if s.cluster != nil {
		s.showClusterNode(w, r)
		return
	}
	if r.PathValue("node") != s.node {
		writeError(w, http.StatusNotFound, "Object Not Found", "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, s.nodeJSON())
}
