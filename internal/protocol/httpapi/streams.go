package httpapi

import (
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// A page of a stream's history for a script or a page load:
//
//	GET /api/streams/{vhost}/{name}/messages?offset=N&limit=M&encoding=auto|base64
//
// returns up to M (default 100, at most 10000) messages from offset N
// (default: the first retained; one before the retained range starts at
// the first retained, one past the end gives []), each shaped as an answer
// of POST /api/queues/{vhost}/{name}/get plus "offset". Reading a stream
// removes nothing; message_count is the number of messages after this one.

// StreamMessageJSON is one message of a stream page.
type StreamMessageJSON struct {
	Offset uint64 `json:"offset"`
	jsonmsg.Got
}

const defaultStreamPage = 100

func (s *Server) readStream(w http.ResponseWriter, r *http.Request) {
	v := s.usableVHost(w, r, r.PathValue("vhost"))
	if v == nil {
		return
	}
	qv := r.URL.Query()
	offset, limit := uint64(0), defaultStreamPage
	if o := qv.Get("offset"); o != "" {
		n, err := strconv.ParseUint(o, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "offset must be a non-negative integer")
			return
		}
		offset = n
	}
	if l := qv.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be a positive integer")
			return
		}
		limit = n
	}
	enc := qv.Get("encoding")
	if enc != "" && enc != "auto" && enc != "base64" {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid encoding (auto or base64)")
		return
	}
	name := r.PathValue("name")
	if err := s.check(userOf(r), v, auth.Read, auth.Queue, name); err != nil {
		writeBrokerError(w, err)
		return
	}
	q, err := v.Queue(name)
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	info, ok := q.StreamInfo()
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "queue '"+name+"' is not a stream")
		return
	}
	ms, err := q.ReadStream(offset, limit)
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := make([]StreamMessageJSON, 0, len(ms))
	for _, m := range ms {
		payload, pe := jsonmsg.EncodeBody(m.Message.Body, enc == "base64")
		left := 0
		if info.NextOffset > m.Offset+1 {
			left = int(info.NextOffset - m.Offset - 1)
		}
		out = append(out, StreamMessageJSON{Offset: m.Offset, Got: jsonmsg.Got{
			PayloadBytes: len(m.Message.Body), Exchange: m.Message.Exchange, RoutingKey: m.Message.RoutingKey,
			MessageCount: left, Properties: jsonmsg.PropsToJSON(&m.Message.Properties), Payload: payload, PayloadEncoding: pe,
		}})
	}
	s.httpCount.CountDeliver(len(out))
	writeJSON(w, http.StatusOK, out)
}
