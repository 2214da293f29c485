package httpapi

import (
	"bufio"
	"net/http"
	"strconv"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

// serveSSE is /sse?queue=q, /sse?stream=s&offset=o (streams.go) or
// /sse?exchange=e&key=k (and &vhost=): a
// text/event-stream with one "message" event per delivery. Deliveries are
// acknowledged once written (auto-ack); an exchange subscription gets a
// private exclusive auto-delete queue for the life of the stream.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	vname := qv.Get("vhost")
	if vname == "" {
		vname = broker.DefaultVHost
	}
	v := s.usableVHost(w, r, vname)
	if v == nil {
		return
	}
	_, hasEx := qv["exchange"]
	stream := qv.Get("stream")
	given := 0
	for _, b := range []bool{qv.Get("queue") != "", hasEx, stream != ""} {
		if b {
			given++
		}
	}
	if given != 1 {
		writeError(w, http.StatusBadRequest, "bad_request", "give either queue or exchange (and key), or stream")
		return
	}
	var args broker.Table
	prefetch := 0
	if stream != "" {
		var err error
		if args, err = streamArgs(qv.Get("offset"), r.Header.Get("Last-Event-ID")); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		prefetch = defaultStreamPrefetch
	}
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server shutting down")
		return
	}
	defer s.untrack()
	owner := s.broker.NewOwner()
	defer s.broker.ReleaseOwner(owner)

	var q *broker.Queue
	var err error
	if stream != "" {
		q, err = s.streamQueue(userOf(r), v, stream, owner)
	} else if hasEx {
		ex := exchangeName(qv.Get("exchange"))
		if ex == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "cannot bind to the default exchange; use queue=")
			return
		}
		q, err = s.privateQueue(userOf(r), v, ex, qv.Get("key"), owner)
	} else if err = s.check(userOf(r), v, auth.Read, auth.Queue, qv.Get("queue")); err == nil {
		q, err = v.UsableQueue(qv.Get("queue"), owner)
	}
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	ob := newOutbox(s.cfg.Outbox)
	x := &sub{o: ob, id: "sse", queue: q, auto: true, private: hasEx}
	bc, err := q.Consume(broker.ConsumerOptions{Tag: "herald.sse", Owner: owner, Sink: x, Prefetch: prefetch, Args: args})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	x.bc = bc
	defer func() {
		bc.Cancel()
		ob.close()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := bufio.NewWriter(w)
	// The first comment gets the headers to the client before any message.
	if _, err := bw.WriteString(": " + q.Name() + "\n\n"); err != nil {
		return
	}
	if bw.Flush() != nil || rc.Flush() != nil {
		return
	}
	x.started.Store(true)
	bc.Resume()
	defer s.streamOpened(protocolSSELabel)()

	hb := time.NewTicker(s.cfg.SSEHeartbeat)
	defer hb.Stop()
	expired, stopExpiry := web.TokenExpiry(userOf(r))
	defer stopExpiry()
	var batch []outItem
	for {
		select {
		case <-r.Context().Done():
			return
		case <-expired:
			_, _ = bw.WriteString(": token expired\n\n")
			_ = bw.Flush()
			_ = rc.Flush()
			return
		case <-s.ctx.Done():
			// SSE has no close code; a last comment says why.
			_, _ = bw.WriteString(": server shutting down\n\n")
			_ = bw.Flush()
			_ = rc.Flush()
			return
		case <-hb.C:
			_, _ = bw.WriteString(": heartbeat\n\n")
		case <-ob.notify:
			batch = ob.take(batch)
			for i := range batch {
				it := &batch[i]
				if it.sub == nil {
					// The queue went away (Cancelled): end the stream.
					_, _ = bw.WriteString("event: cancelled\ndata: " + string(it.ctrl) + "\n\n")
					_ = bw.Flush()
					_ = rc.Flush()
					return
				}
				m := newMessageJSON(&it.d)
				bw.WriteString("event: message\nid: ")
				if m.Offset != nil {
					bw.WriteString(strconv.FormatUint(*m.Offset, 10)) // Last-Event-ID resumes after it
				} else {
					bw.WriteString(strconv.FormatUint(it.tag, 10))
				}
				bw.WriteString("\ndata: ")
				bw.Write(mustJSON(m)) // JSON has no raw newlines: one data line
				bw.WriteString("\n\n")
			}
		}
		// Flush once per batch; a failed write means the client left.
		if bw.Flush() != nil || rc.Flush() != nil {
			return
		}
		n := 0
		for i := range batch {
			if batch[i].sub != nil {
				ob.written(&batch[i])
				n++
			}
		}
		if n > 0 {
			s.sseCount.CountDeliver(n)
		}
		clear(batch)
		batch = batch[:0]
	}
}
