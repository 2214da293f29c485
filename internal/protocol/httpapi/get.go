package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// getRequest is the body of RabbitMQ's POST /api/queues/{vhost}/{queue}/get.
type getRequest struct {
	Count    jsonmsg.FlexInt `json:"count"`
	AckMode  string          `json:"ackmode"`
	Encoding string          `json:"encoding"`
	Truncate jsonmsg.FlexInt `json:"truncate"`
	// Requeue is the pre-3.7 form of ackmode.
	Requeue *bool `json:"requeue"`
}

// maxGetCount bounds one pull so that a request cannot hold a whole queue.
const maxGetCount = 10000

func (s *Server) getMessages(w http.ResponseWriter, r *http.Request) {
	v := s.usableVHost(w, r, r.PathValue("vhost"))
	if v == nil {
		return
	}
	var req getRequest
	if !s.decodeBody(w, r, &req) {
		return
	}
	if req.AckMode == "" {
		req.AckMode = "ack_requeue_true"
		if req.Requeue != nil && !*req.Requeue {
			req.AckMode = "ack_requeue_false"
		}
	}
	var settle func(q *broker.Queue, ids ...uint64)
	switch req.AckMode {
	case "ack_requeue_true", "reject_requeue_true":
		settle = (*broker.Queue).Requeue
	case "ack_requeue_false":
		settle = (*broker.Queue).Ack
	case "reject_requeue_false":
		settle = (*broker.Queue).Discard
	default:
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid ackmode %q", req.AckMode))
		return
	}
	if req.Encoding == "" {
		req.Encoding = "auto"
	}
	if req.Encoding != "auto" && req.Encoding != "base64" {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("invalid encoding %q (auto or base64)", req.Encoding))
		return
	}
	count := int(req.Count)
	if count <= 0 {
		count = 1
	}
	count = min(count, maxGetCount)
	if err := s.check(userOf(r), v, auth.Read, auth.Queue, r.PathValue("queue")); err != nil {
		writeBrokerError(w, err)
		return
	}
	q, err := v.Queue(r.PathValue("queue"))
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := make([]jsonmsg.Got, 0, min(count, 64))
	var ids []uint64
	for range count {
		d, ok, err := q.Get(0, false)
		if err != nil {
			q.Requeue(ids...)
			writeBrokerError(w, err)
			return
		}
		if !ok {
			break
		}
		ids = append(ids, d.ID)
		body := d.Message.Body
		if t := int(req.Truncate); t > 0 && len(body) > t {
			body = body[:t]
		}
		payload, enc := jsonmsg.EncodeBody(body, req.Encoding == "base64")
		out = append(out, jsonmsg.Got{
			PayloadBytes: len(d.Message.Body), Redelivered: d.Redelivered,
			Exchange: d.Message.Exchange, RoutingKey: d.Message.RoutingKey, MessageCount: d.Remaining,
			Properties: jsonmsg.PropsToJSON(&d.Message.Properties), Payload: payload, PayloadEncoding: enc,
		})
	}
	// Settle only after the loop: requeued messages go back to the head
	// and would otherwise be fetched again by the same request.
	settle(q, ids...)
	s.httpCount.CountDeliver(len(ids))
	if req.AckMode == "ack_requeue_false" {
		s.httpCount.CountAck(len(ids))
	}
	writeJSON(w, http.StatusOK, out)
}

// MessageJSON is a delivery in Herald's own JSON shape (/v1/fetch, /ws, /sse).
type MessageJSON struct {
	Op          string         `json:"op,omitempty"`
	Sub         string         `json:"sub,omitempty"`
	Tag         uint64         `json:"tag,omitempty"`
	Exchange    string         `json:"exchange"`
	Key         string         `json:"key"`
	Body        string         `json:"body"`
	Encoding    string         `json:"encoding,omitempty"` // "base64" for binary bodies
	Headers     map[string]any `json:"headers,omitempty"`
	Properties  jsonmsg.Props  `json:"properties"`
	Redelivered bool           `json:"redelivered"`
	// Offset is a stream delivery's offset.
	Offset *uint64 `json:"offset,omitempty"`
}

func newMessageJSON(d *broker.Delivery) MessageJSON {
	m := d.Message
	body, enc := jsonmsg.EncodeBody(m.Body, false)
	if enc == "string" {
		enc = ""
	}
	p := jsonmsg.PropsToJSON(&m.Properties)
	h := p.Headers
	p.Headers = nil
	j := MessageJSON{Exchange: m.Exchange, Key: m.RoutingKey, Body: body, Encoding: enc, Headers: h, Properties: p, Redelivered: d.Redelivered}
	if off, ok := deliveryOffset(d); ok {
		j.Offset = &off
	}
	return j
}

// collector is the broker.Sink of one long-polling fetch: it keeps up to
// max deliveries and wakes the request on the first.
type collector struct {
	mu    sync.Mutex
	ds    []broker.Delivery
	max   int
	gone  bool          // the queue was deleted
	ready chan struct{} // cap 1
}

func (c *collector) Deliver(d broker.Delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ds) >= c.max {
		return false
	}
	c.ds = append(c.ds, d)
	select {
	case c.ready <- struct{}{}:
	default:
	}
	return true
}

func (c *collector) Cancelled(*broker.Consumer) {
	c.mu.Lock()
	c.gone = true
	c.mu.Unlock()
	select {
	case c.ready <- struct{}{}:
	default:
	}
}

// maxFetch bounds the batch of one fetch.
const maxFetch = 1000

// fetch is GET /v1/fetch/{queue}?vhost=/&max=10&timeout=30s: it waits
// until at least one message arrives (or the timeout passes), answers with
// a JSON array of up to max messages and acknowledges them.
func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	vname := qv.Get("vhost")
	if vname == "" {
		vname = broker.DefaultVHost
	}
	v := s.usableVHost(w, r, vname)
	if v == nil {
		return
	}
	max := 10
	if m := qv.Get("max"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "max must be a positive integer")
			return
		}
		max = min(n, maxFetch)
	}
	timeout := 30 * time.Second
	if t := qv.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			n, nerr := strconv.Atoi(t)
			if nerr != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "timeout must be a duration (30s) or seconds")
				return
			}
			d = time.Duration(n) * time.Second
		}
		if d < 0 {
			d = 0
		}
		timeout = min(d, s.cfg.MaxFetchTimeout)
	}
	if err := s.check(userOf(r), v, auth.Read, auth.Queue, r.PathValue("queue")); err != nil {
		writeBrokerError(w, err)
		return
	}
	q, err := v.Queue(r.PathValue("queue"))
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "server shutting down")
		return
	}
	defer s.untrack()
	col := &collector{max: max, ready: make(chan struct{}, 1)}
	c, err := q.Consume(broker.ConsumerOptions{Tag: "herald.fetch", Prefetch: max, Sink: col})
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	timer := time.NewTimer(timeout)
	select {
	case <-col.ready:
	case <-timer.C:
	case <-r.Context().Done():
	case <-s.ctx.Done():
	}
	timer.Stop()
	// After Cancel returns no Deliver is running or will run, so the
	// collected deliveries are ours alone.
	c.Cancel()
	col.mu.Lock()
	ds := col.ds
	col.mu.Unlock()
	ids := make([]uint64, len(ds))
	out := make([]MessageJSON, len(ds))
	for i := range ds {
		ids[i] = ds[i].ID
		out[i] = newMessageJSON(&ds[i])
	}
	if r.Context().Err() != nil {
		q.Requeue(ids...) // nobody is left to answer
		return
	}
	q.Ack(ids...)
	s.httpCount.CountDeliver(len(ids))
	s.httpCount.CountAck(len(ids))
	writeJSON(w, http.StatusOK, out)
}
