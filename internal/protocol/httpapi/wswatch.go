package httpapi

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// wsWatch pings every /ws peer each half heartbeat interval (realtime.go)
// and closes every socket on server shutdown, from one goroutine that
// runs while sockets are open, instead of a timer and a context callback
// per socket: those cost an idle socket about 400 bytes, the watch's set
// a dozen.
type wsWatch struct {
	mu       sync.Mutex
	sessions map[*wsSession]struct{}
	running  bool // the loop runs
	closed   bool // the server shut down: no socket joins
}

// maxWatchTick bounds the loop's tick: a ping is due between half an
// interval and that plus a tick after the previous one. The tick is fine
// so that each one pings a small share of the sockets: 15,000 sockets
// pinged in a few bursts cost ~100 ms of CPU each, which a broadcast
// caught in one waits out (p99 to the last of 15,000 /ws subscribers went
// from ~160 to 260-300 ms).
const maxWatchTick = 250 * time.Millisecond

// firstPing is when a socket joining at now is first pinged: somewhere in
// the second quarter of the heartbeat interval, so that sockets that
// connected together (a reconnect storm, a bench) have their pings spread
// over a quarter of the interval, and keep them spread, rather than
// pinged in the same tick forever after.
func firstPing(now time.Time, half time.Duration) int64 {
	return now.Add(half/2 + rand.N(half/2+1)).UnixNano()
}

// watch adds ws to the server's watch; it reports false once the server
// is shutting down (the caller then closes the socket).
func (ws *wsSession) watch() bool {
	s := ws.s
	w := &s.watch
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	if w.sessions == nil {
		w.sessions = make(map[*wsSession]struct{})
	}
	w.sessions[ws] = struct{}{}
	ws.nextPing = firstPing(time.Now(), s.cfg.WSHeartbeat/2)
	if !w.running {
		w.running = true
		go s.watchLoop()
	}
	return true
}

// stopWatch removes ws from the watch (end). A ping in flight finds the
// socket closed.
func (ws *wsSession) stopWatch() {
	w := &ws.s.watch
	w.mu.Lock()
	delete(w.sessions, ws)
	w.mu.Unlock()
}

// watchLoop pings the sockets whose ping is due, each on a goroutine of
// its own (a ping waits for its pong), until no socket is left or the
// server shuts down, which closes them all.
func (s *Server) watchLoop() {
	w := &s.watch
	half := s.cfg.WSHeartbeat / 2
	tick := min(half/8, maxWatchTick)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			w.mu.Lock()
			w.closed, w.running = true, false
			all := make([]*wsSession, 0, len(w.sessions))
			for ws := range w.sessions {
				all = append(all, ws)
			}
			w.mu.Unlock()
			for _, ws := range all {
				// Close waits for the peer's close frame: in parallel.
				go ws.shutdown(wsconn.StatusGoingAway, "server shutting down")
			}
			return
		case now := <-t.C:
			w.mu.Lock()
			if len(w.sessions) == 0 {
				w.running = false
				w.mu.Unlock()
				return
			}
			n := now.UnixNano()
			for ws := range w.sessions {
				if !ws.pinging && n >= ws.nextPing {
					ws.pinging = true
					go ws.ping(half)
				}
			}
			w.mu.Unlock()
		}
	}
}

// ping runs one heartbeat and schedules the next.
func (ws *wsSession) ping(half time.Duration) {
	ws.heartbeat()
	w := &ws.s.watch
	w.mu.Lock()
	ws.pinging = false
	ws.nextPing = time.Now().Add(half).UnixNano()
	w.mu.Unlock()
}
