package admin

import (
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// Queue inspection and repair, which RabbitMQ's management API lacks:
// look at ready messages without consuming them, drop one, and move
// messages to another queue (a dead-letter queue back to its origin).
//
//	GET    /api/queues/{vhost}/{name}/messages?count=N&encoding=auto|base64&truncate=N
//	DELETE /api/queues/{vhost}/{name}/messages/{id}
//	POST   /api/queues/{vhost}/{name}/move   {"to": "other", "count": 100} -> {"moved": n}

// PeekMessage is a ready message in the shape of RabbitMQ's get, plus
// its queue-local id (for DELETE .../messages/{id}).
type PeekMessage struct {
	ID uint64 `json:"id"`
	jsonmsg.Got
}

// maxPeekCount bounds one peek: it copies under the queue's lock.
const maxPeekCount = 1000

// inspectedQueue resolves the queue of an inspection request after
// checking the permission kind on it.
func (s *Server) inspectedQueue(w http.ResponseWriter, r *http.Request, kind auth.Kind) (*broker.VHost, *broker.Queue) {
	v := s.vhostOf(w, r.PathValue("vhost"))
	if v == nil || !s.allowMgmt(w, r, v, auth.Queue, r.PathValue("name"), kind) {
		return nil, nil
	}
	q, err := v.Queue(r.PathValue("name"))
	if err != nil {
		writeBrokerError(w, err)
		return nil, nil
	}
	return v, q
}

func (s *Server) peekMessages(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	count := 10
	if c := qv.Get("count"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "count must be a positive integer")
			return
		}
		count = min(n, maxPeekCount)
	}
	truncate := 0
	if t := qv.Get("truncate"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "truncate must be a non-negative integer")
			return
		}
		truncate = n
	}
	enc := qv.Get("encoding")
	if enc != "" && enc != "auto" && enc != "base64" {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid encoding (auto or base64)")
		return
	}
	_, q := s.inspectedQueue(w, r, auth.Read)
	if q == nil {
		return
	}
	ds := q.Peek(count)
	out := make([]PeekMessage, 0, len(ds))
	for i, d := range ds {
		body := d.Message.Body
		if truncate > 0 && len(body) > truncate {
			body = body[:truncate]
		}
		payload, penc := jsonmsg.EncodeBody(body, enc == "base64")
		out = append(out, PeekMessage{ID: d.ID, Got: jsonmsg.Got{
			PayloadBytes: len(d.Message.Body), Redelivered: d.Redelivered,
			Exchange: d.Message.Exchange, RoutingKey: d.Message.RoutingKey, MessageCount: d.Remaining - i - 1,
			Properties: jsonmsg.PropsToJSON(&d.Message.Properties), Payload: payload, PayloadEncoding: penc,
		}})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "message id must be an unsigned integer (as peek reports it)")
		return
	}
	v, q := s.inspectedQueue(w, r, auth.Read)
	if q == nil {
		return
	}
	if !q.DeleteMessage(id) {
		writeError(w, http.StatusNotFound, "Object Not Found", "no ready message "+r.PathValue("id")+" in the queue (delivered, expired or already gone)")
		return
	}
	s.log.Info("message deleted", "vhost", v.Name(), "queue", q.Name(), "id", id, "by", userOf(r).Name)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) moveMessages(w http.ResponseWriter, r *http.Request) {
	var req struct {
		To    string          `json:"to"`
		Count jsonmsg.FlexInt `json:"count"`
	}
	if !s.decodeBody(w, r, &req) {
		return
	}
	if req.To == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "to (the target queue) is required")
		return
	}
	count := int(req.Count)
	if count <= 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "count must be a positive integer")
		return
	}
	v, q := s.inspectedQueue(w, r, auth.Read)
	if q == nil || !s.allowMgmt(w, r, v, auth.Exchange, "", auth.Write) {
		return
	}
	moved, err := v.MoveMessages(q.Name(), req.To, count)
	if err != nil && moved == 0 {
		writeBrokerError(w, err)
		return
	}
	out := map[string]any{"moved": moved}
	if err != nil {
		out["reason"] = err.Error() // stopped early; what moved stays moved
	}
	writeJSON(w, http.StatusOK, out)
}
