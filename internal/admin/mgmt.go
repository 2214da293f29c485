package admin

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// The management basics, in the JSON shapes of RabbitMQ's management API
// so that scripts written for it work.

type ExchangeJSON struct {
	Name       string         `json:"name"`
	VHost      string         `json:"vhost"`
	Type       string         `json:"type"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Internal   bool           `json:"internal"`
	Arguments  map[string]any `json:"arguments"`
}

func newExchangeJSON(v *broker.VHost, e *broker.Exchange) ExchangeJSON {
	return ExchangeJSON{Name: e.Name(), VHost: v.Name(), Type: e.Kind(), Durable: e.Durable(),
		AutoDelete: e.AutoDelete(), Internal: e.Internal(), Arguments: argsJSON(e.Args())}
}

type QueueJSON struct {
	Name                   string         `json:"name"`
	VHost                  string         `json:"vhost"`
	Durable                bool           `json:"durable"`
	AutoDelete             bool           `json:"auto_delete"`
	Exclusive              bool           `json:"exclusive"`
	Arguments              map[string]any `json:"arguments"`
	Messages               int            `json:"messages"`
	MessagesReady          int            `json:"messages_ready"`
	MessagesUnacknowledged int            `json:"messages_unacknowledged"`
	Consumers              int            `json:"consumers"`
	State                  string         `json:"state"`
	Type                   string         `json:"type"`
	MessageStats           messageStats   `json:"message_stats"`
	// Streams only: bytes on disk and the retained range (last_offset is
	// -1 while the stream is empty).
	MessageBytes *int64  `json:"message_bytes,omitempty"`
	FirstOffset  *uint64 `json:"first_offset,omitempty"`
	LastOffset   *int64  `json:"last_offset,omitempty"`
	Segments     *int    `json:"segments,omitempty"`
	// Quorum queues in cluster mode: RabbitMQ's leader, members and
	// online, by node name (one Raft group: the members are all nodes).
	Leader  string   `json:"leader,omitempty"`
	Members []string `json:"members,omitempty"`
	Online  []string `json:"online,omitempty"`
}

// messageStats is RabbitMQ's message_stats: counts since the queue was
// declared (summed over the queues for the overview) and, in the
// *_details objects, the rates over the last sampling interval (see
// stats.go).
type messageStats struct {
	Publish           uint64     `json:"publish"`
	PublishDetails    rateDetail `json:"publish_details"`
	DeliverGet        uint64     `json:"deliver_get"`
	DeliverGetDetails rateDetail `json:"deliver_get_details"`
	Ack               uint64     `json:"ack"`
	AckDetails        rateDetail `json:"ack_details"`
}

// rateDetail is RabbitMQ's {"rate": messages per second}.
type rateDetail struct {
	Rate float64 `json:"rate"`
}

func newMessageStats(publish, deliverGet, ack uint64, r msgRates) messageStats {
	return messageStats{Publish: publish, PublishDetails: rateDetail{r.Publish},
		DeliverGet: deliverGet, DeliverGetDetails: rateDetail{r.DeliverGet},
		Ack: ack, AckDetails: rateDetail{r.Ack}}
}

func (s *Server) queueJSON(v *broker.VHost, q *broker.Queue) QueueJSON {
	st := q.Stats()
	return QueueJSON{Name: q.Name(), VHost: v.Name(), Durable: q.Durable(), AutoDelete: q.AutoDelete(),
		Exclusive: q.Exclusive(), Arguments: argsJSON(q.Args()),
		Messages: st.Ready + st.Unacked, MessagesReady: st.Ready, MessagesUnacknowledged: st.Unacked,
		Consumers: st.Consumers, State: "running", Type: q.Type(),
		MessageStats: newMessageStats(st.Published, st.Delivered, st.Acks, s.stats.queue(q))}
}

// newQueueJSON is queueJSON with a stream's range: a stream's messages
// are all it retains (an unacked delivery is still in it).
func (s *Server) newQueueJSON(v *broker.VHost, q *broker.Queue) QueueJSON {
	j := s.queueJSON(v, q)
	if si, ok := q.StreamInfo(); ok {
		j.Messages, j.MessagesReady = int(si.Messages), int(si.Messages)
		last := int64(si.NextOffset) - 1
		j.MessageBytes, j.FirstOffset, j.LastOffset, j.Segments = &si.Bytes, &si.FirstOffset, &last, &si.Segments
	}
	if leader, members, online, ok := q.Replicas(); ok {
		j.Leader, j.Members, j.Online = leader, members, online
	}
	return j
}

func argsJSON(t broker.Table) map[string]any {
	if t == nil {
		return map[string]any{}
	}
	return jsonmsg.TableToJSON(t)
}

// vhosts returns the {vhost} of the path, or every vhost when the route
// has none.
func (s *Server) vhosts(w http.ResponseWriter, r *http.Request) ([]*broker.VHost, bool) {
	if strings.Contains(r.Pattern, "{vhost}") {
		v := s.vhostOf(w, r.PathValue("vhost"))
		return []*broker.VHost{v}, v != nil
	}
	return s.broker.VHosts(), true
}

// listPerVHost answers a list endpoint (GET /api/x or /api/x/{vhost}):
// add appends the items of one vhost; the result is paged and sorted as
// the query asks (default sort key sortKey).
func listPerVHost[T any](s *Server, w http.ResponseWriter, r *http.Request, sortKey string, add func(v *broker.VHost, out []T) []T) {
	vs, ok := s.vhosts(w, r)
	if !ok {
		return
	}
	out := []T{}
	for _, v := range vs {
		out = add(v, out)
	}
	writeList(w, r, out, sortKey)
}

// argumentsFromJSON converts a request's "arguments" to a table (nil when
// empty), or answers 400 and reports false.
func argumentsFromJSON(w http.ResponseWriter, m map[string]any) (broker.Table, bool) {
	args, err := jsonmsg.TableFromJSON(m)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return nil, false
	}
	if len(args) == 0 {
		return nil, true
	}
	return args, true
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	var queues, exchanges, consumers, ready, unacked int
	var pub, del, ack uint64
	conns := s.broker.Connections()
	channels := 0
	for _, c := range conns {
		channels += c.Channels
	}
	for _, v := range s.broker.VHosts() {
		exchanges += len(v.Exchanges())
		for _, q := range v.Queues() {
			st := q.Stats()
			queues++
			consumers += st.Consumers
			ready += st.Ready
			unacked += st.Unacked
			pub += st.Published
			del += st.Delivered
			ack += st.Acks
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"product_name":       "Herald",
		"product_version":    s.cfg.Version,
		"management_version": s.cfg.Version,
		"rabbitmq_version":   s.cfg.Version,
		"cluster_name":       "herald",
		"node":               s.node,
		"object_totals": map[string]int{"queues": queues, "exchanges": exchanges, "consumers": consumers,
			"connections": len(conns), "channels": channels},
		"queue_totals":  map[string]int{"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked},
		"message_stats": newMessageStats(pub, del, ack, s.stats.overall()),
	})
}

func vhostJSON(v *broker.VHost) map[string]any {
	var ready, unacked int
	for _, q := range v.Queues() {
		st := q.Stats()
		ready += st.Ready
		unacked += st.Unacked
	}
	return map[string]any{"name": v.Name(), "tracing": false,
		"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
}

func (s *Server) listVHosts(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	for _, v := range s.broker.VHosts() {
		out = append(out, vhostJSON(v))
	}
	writeList(w, r, out, "name")
}

func (s *Server) showVHost(w http.ResponseWriter, r *http.Request) {
	if v := s.vhostOf(w, r.PathValue("vhost")); v != nil {
		writeJSON(w, http.StatusOK, vhostJSON(v))
	}
}

func (s *Server) listExchanges(w http.ResponseWriter, r *http.Request) {
	listPerVHost(s, w, r, "name", func(v *broker.VHost, out []ExchangeJSON) []ExchangeJSON {
		for _, e := range v.Exchanges() {
			out = append(out, newExchangeJSON(v, e))
		}
		return out
	})
}

func (s *Server) showExchange(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	e, err := v.Exchange(exchangeName(r.PathValue("name")))
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, newExchangeJSON(v, e))
}

func (s *Server) putExchange(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil || !(s.allowMgmt(w, r, v, auth.Exchange, exchangeName(r.PathValue("name")), auth.Configure)) {
		return
	}
	// RabbitMQ's defaults: durable unless said otherwise.
	req := struct {
		Type       string         `json:"type"`
		Durable    *flexBool      `json:"durable"`
		AutoDelete flexBool       `json:"auto_delete"`
		Internal   flexBool       `json:"internal"`
		Arguments  map[string]any `json:"arguments"`
	}{}
	if !s.decodeBody(w, r, &req) {
		return
	}
	if req.Type == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "type is required")
		return
	}
	args, ok := argumentsFromJSON(w, req.Arguments)
	if !ok {
		return
	}
	name := r.PathValue("name")
	_, existed := v.Exchange(name)
	if _, err := v.DeclareExchange(name, broker.ExchangeOptions{Kind: req.Type, Durable: boolOr(req.Durable, true),
		AutoDelete: bool(req.AutoDelete), Internal: bool(req.Internal), Args: args}); err != nil {
		writeBrokerError(w, err)
		return
	}
	created(w, existed == nil)
}

func created(w http.ResponseWriter, existed bool) {
	if existed {
		w.WriteHeader(http.StatusNoContent)
	} else {
		w.WriteHeader(http.StatusCreated)
	}
}

func (s *Server) deleteExchange(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil || !(s.allowMgmt(w, r, v, auth.Exchange, exchangeName(r.PathValue("name")), auth.Configure)) {
		return
	}
	if err := v.DeleteExchange(r.PathValue("name"), r.URL.Query().Get("if-unused") == "true"); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listQueues(w http.ResponseWriter, r *http.Request) {
	listPerVHost(s, w, r, "name", func(v *broker.VHost, out []QueueJSON) []QueueJSON {
		for _, q := range v.Queues() {
			out = append(out, s.newQueueJSON(v, q))
		}
		return out
	})
}

func (s *Server) showQueue(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	q, err := v.Queue(r.PathValue("name"))
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.newQueueJSON(v, q))
}

func (s *Server) putQueue(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil || !(s.allowMgmt(w, r, v, auth.Queue, r.PathValue("name"), auth.Configure)) {
		return
	}
	req := struct {
		Durable    *flexBool      `json:"durable"`
		AutoDelete flexBool       `json:"auto_delete"`
		Arguments  map[string]any `json:"arguments"`
	}{}
	if !s.decodeBody(w, r, &req) {
		return
	}
	args, ok := argumentsFromJSON(w, req.Arguments)
	if !ok {
		return
	}
	name := r.PathValue("name")
	if name == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "queue name is required")
		return
	}
	_, existed := v.Queue(name)
	if _, err := v.DeclareQueue(name, broker.QueueOptions{Durable: boolOr(req.Durable, true), AutoDelete: bool(req.AutoDelete), Args: args}); err != nil {
		writeBrokerError(w, err)
		return
	}
	created(w, existed == nil)
}

func (s *Server) deleteQueue(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil || !(s.allowMgmt(w, r, v, auth.Queue, r.PathValue("name"), auth.Configure)) {
		return
	}
	qv := r.URL.Query()
	if _, err := v.DeleteQueue(r.PathValue("name"), 0, qv.Get("if-unused") == "true", qv.Get("if-empty") == "true"); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) purgeQueue(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil || !(s.allowMgmt(w, r, v, auth.Queue, r.PathValue("name"), auth.Read)) {
		return
	}
	if _, err := v.PurgeQueue(r.PathValue("name"), 0); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// aliveness is RabbitMQ's aliveness test: declare a queue, publish to it
// and get the message back.
func (s *Server) aliveness(w http.ResponseWriter, r *http.Request) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil {
		return
	}
	const name = "aliveness-test"
	q, err := v.DeclareQueue(name, broker.QueueOptions{})
	if err == nil {
		_, err = v.Publisher().Publish(&broker.Message{RoutingKey: name, Body: []byte("test_message")})
	}
	if err == nil {
		var ok bool
		_, ok, err = q.Get(0, true)
		if err == nil && !ok {
			err = fmt.Errorf("published message did not arrive")
		}
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "failed", "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// alarms answers as RabbitMQ's health check does: 200 "ok", or 503 with
// the raised resource alarms (memory, disk).
func (s *Server) alarms(w http.ResponseWriter, r *http.Request) {
	if raised := s.broker.Alarms(); len(raised) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "failed", "reason": "resource alarm(s) in effect: " + strings.Join(raised, ", "), "alarms": raised})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
