package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// The HTTP gateway to RPC services (docs/rpc-gateway.md):
// POST /api/rpc/{vhost}/{service}/{method} publishes the body as a request
// to the queue rpc.{service} by the wire convention of docs/rpc.md and
// answers with the reply. Replies come back through the broker's direct
// reply-to: one hidden reply queue per vhost, shared by every request of
// the gateway and demultiplexed by correlation id.

// Deadline of a call: X-Herald-Timeout, a Go duration.
const (
	rpcTimeoutHeader  = "X-Herald-Timeout"
	rpcDefaultTimeout = 30 * time.Second
	rpcMaxTimeout     = 5 * time.Minute
)

// Headers of the wire convention.
const (
	rpcDeadlineHeader = "x-deadline"
	rpcErrorHeader    = "x-rpc-error"
)

// rpcHTTPStatus maps a reply's x-rpc-status (a gRPC code name) to the
// gateway's HTTP status.
func rpcHTTPStatus(status string) int {
	switch status {
	case "OK", "":
		return http.StatusOK
	case "INVALID_ARGUMENT":
		return http.StatusBadRequest
	case "NOT_FOUND":
		return http.StatusNotFound
	case "UNIMPLEMENTED":
		return http.StatusNotImplemented
	case "RESOURCE_EXHAUSTED":
		return http.StatusTooManyRequests
	case "UNAVAILABLE":
		return http.StatusServiceUnavailable
	case "DEADLINE_EXCEEDED":
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// rpcGateway holds the reply routes of the gateway, one per vhost, owned
// by one broker owner that is released when the shell closes.
type rpcGateway struct {
	s     *Server
	owner broker.Owner
	corr  atomic.Uint64 // correlation ids, unique per gateway

	mu     sync.Mutex // guards routes and closed
	routes map[*broker.VHost]*replyRoute
	closed bool
}

func newRPCGateway(s *Server) *rpcGateway {
	g := &rpcGateway{s: s, owner: s.broker.NewOwner(), routes: make(map[*broker.VHost]*replyRoute)}
	s.shell.Go(func() {
		<-s.ctx.Done()
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		s.broker.ReleaseOwner(g.owner) // deletes the reply queues; their routes fail their waiters
	})
	return g
}

// replyRoute is the gateway's reply queue in one vhost: the sink of its
// consumer hands each reply to the request waiting on its correlation id.
type replyRoute struct {
	queue *broker.Queue

	mu      sync.Mutex // guards waiting and gone
	waiting map[string]chan *broker.Message
	gone    bool
}

// route returns the vhost's reply route, declaring it on first use.
func (g *rpcGateway) route(v *broker.VHost) (*replyRoute, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errors.New("the server is shutting down")
	}
	if r := g.routes[v]; r != nil && !r.isGone() {
		return r, nil
	}
	r := &replyRoute{queue: v.DeclareReplyQueue(g.owner), waiting: make(map[string]chan *broker.Message)}
	if _, err := r.queue.Consume(broker.ConsumerOptions{Tag: "herald-rpc-gateway", NoAck: true, Owner: g.owner, Sink: r}); err != nil {
		return nil, err
	}
	for old, x := range g.routes {
		if x.isGone() {
			delete(g.routes, old) // a deleted vhost's
		}
	}
	g.routes[v] = r
	return r, nil
}

// Deliver hands a reply to its waiter; a reply nobody waits for (its
// caller timed out) is dropped. Called under the queue's lock: it only
// does a non-blocking send.
func (r *replyRoute) Deliver(d broker.Delivery) bool {
	r.mu.Lock()
	ch := r.waiting[d.Message.Properties.CorrelationID]
	delete(r.waiting, d.Message.Properties.CorrelationID)
	r.mu.Unlock()
	if ch != nil {
		ch <- d.Message // buffered for exactly this one message
	}
	return true
}

// Cancelled: the reply queue is gone (its vhost was deleted, or the
// gateway is closing); the waiters fail and the next call declares anew
// (route replaces a gone route).
func (r *replyRoute) Cancelled(*broker.Consumer) {
	r.mu.Lock()
	r.gone = true
	for id, ch := range r.waiting {
		close(ch)
		delete(r.waiting, id)
	}
	r.mu.Unlock()
}

func (r *replyRoute) isGone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// wait registers a waiter for correlation id; false if the route is gone.
func (r *replyRoute) wait(id string) (chan *broker.Message, bool) {
	ch := make(chan *broker.Message, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone {
		return nil, false
	}
	r.waiting[id] = ch
	return ch, true
}

func (r *replyRoute) forget(id string) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

// writeRPCError answers with the gateway's error shape.
func writeRPCError(w http.ResponseWriter, status int, code, reason string) {
	writeJSON(w, status, map[string]string{"error": code, "reason": reason})
}

// maxRPCBody is the largest request body: --max-message-size, and never
// more than the shell's bound on any request body.
func (s *Server) maxRPCBody() int64 {
	if m := s.cfg.MaxMessageSize; m > 0 && m < s.cfg.MaxBodySize {
		return m
	}
	return s.cfg.MaxBodySize
}

// parseRPCTimeout reads X-Herald-Timeout: a positive Go duration of at
// most rpcMaxTimeout; absent, rpcDefaultTimeout.
func parseRPCTimeout(h string) (time.Duration, error) {
	if h == "" {
		return rpcDefaultTimeout, nil
	}
	d, err := time.ParseDuration(h)
	if err != nil {
		return 0, fmt.Errorf("invalid %s %q: use a Go duration such as 500ms or 10s", rpcTimeoutHeader, h)
	}
	if d <= 0 || d > rpcMaxTimeout {
		return 0, fmt.Errorf("%s %q is out of range: it must be positive and at most %s", rpcTimeoutHeader, h, rpcMaxTimeout)
	}
	return d, nil
}

// callRPC is POST /api/rpc/{vhost}/{service}/{method}.
func (s *Server) callRPC(w http.ResponseWriter, r *http.Request) {
	v := s.usableVHost(w, r, r.PathValue("vhost"))
	if v == nil {
		return
	}
	service, method := r.PathValue("service"), r.PathValue("method")
	if service == "" || method == "" {
		writeRPCError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "the path is /api/rpc/{vhost}/{service}/{method}")
		return
	}
	queue := broker.ServicePrefix + service
	// Calling S needs write on the queue rpc.S.
	if err := s.check(userOf(r), v, auth.Write, auth.Queue, queue); err != nil {
		writeBrokerError(w, err)
		return
	}
	timeout, err := parseRPCTimeout(r.Header.Get(rpcTimeoutHeader))
	if err != nil {
		writeRPCError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	deadline := time.Now().Add(timeout)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxRPCBody()))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeRPCError(w, http.StatusRequestEntityTooLarge, "RESOURCE_EXHAUSTED",
				fmt.Sprintf("request body larger than %d bytes (--max-message-size)", mbe.Limit))
		} else {
			writeRPCError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		}
		return
	}
	if !s.allowPublish(w, r) {
		return
	}
	if q, err := v.Queue(queue); err != nil || q.Stats().Consumers == 0 {
		writeRPCError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "no responders: no instance of service '"+service+"' in vhost '"+v.Name()+"'")
		return
	}
	rt, err := s.rpc.route(v)
	if err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, "UNAVAILABLE", err.Error())
		return
	}
	id := strconv.FormatUint(s.rpc.corr.Add(1), 36)
	ch, ok := rt.wait(id)
	if !ok {
		writeRPCError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the gateway's reply queue is gone; retry")
		return
	}
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = "application/json"
	}
	m := &broker.Message{RoutingKey: queue, Body: body, Properties: broker.Properties{
		ContentType: contentType, CorrelationID: id, ReplyTo: rt.queue.Name(), Type: service + "." + method,
		Expiration: strconv.FormatInt(max(1, timeout.Milliseconds()), 10),
		Headers:    broker.Table{rpcDeadlineHeader: deadline.UnixMilli()},
		Timestamp:  time.Now().Truncate(time.Second),
	}}
	n, err := publish(r.Context(), v, m, s.rpc.owner)
	if err != nil {
		rt.forget(id)
		writeBrokerError(w, err)
		return
	}
	s.httpCount.CountPublish()
	if n == 0 {
		// The mandatory flag's basic.return: the last instance left.
		rt.forget(id)
		writeRPCError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "no responders: no instance of service '"+service+"' in vhost '"+v.Name()+"'")
		return
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case reply, ok := <-ch:
		if !ok {
			writeRPCError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the gateway's reply queue went away")
			return
		}
		s.httpCount.CountDeliver(1)
		writeRPCReply(w, reply)
	case <-timer.C:
		rt.forget(id)
		writeRPCError(w, http.StatusGatewayTimeout, "DEADLINE_EXCEEDED", fmt.Sprintf("no reply from service '%s' within %s", service, timeout))
	case <-r.Context().Done():
		rt.forget(id) // the client went away
	case <-s.ctx.Done():
		rt.forget(id)
		writeRPCError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the server is shutting down")
	}
}

// writeRPCReply answers with the reply: its body and content type when
// OK, the JSON error shape otherwise.
func writeRPCReply(w http.ResponseWriter, m *broker.Message) {
	status, _ := headerString(m.Properties.Headers, broker.RPCStatusHeader)
	code := rpcHTTPStatus(status)
	if code != http.StatusOK {
		reason, _ := headerString(m.Properties.Headers, rpcErrorHeader)
		writeRPCError(w, code, status, reason)
		return
	}
	ct := m.Properties.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m.Body)
}

func headerString(h broker.Table, key string) (string, bool) {
	switch v := h[key].(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}
