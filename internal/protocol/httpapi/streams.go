package httpapi

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
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

// Consuming a stream over /sse and /ws:
//
//	GET /sse?stream=NAME&offset=first|last|next|N[&vhost=V]
//	{"op":"subscribe","id":"s1","stream":"NAME","offset":"first"|"last"|"next"|N|"1h"}
//
// Each SSE event's id is its offset, so a reconnecting EventSource's
// Last-Event-ID resumes right after it (a Last-Event-ID that is not a
// number is ignored: the stream starts per offset=). /ws deliveries carry
// "offset". Both read with a prefetch (defaultStreamPrefetch unless /ws
// gives one) and settle on write (or on the client's ack with
// "ack":"client"): settling a stream's delivery only returns credit.

// defaultStreamPrefetch is the credit of a stream subscription that sets
// none (a stream consumer needs one).
const defaultStreamPrefetch = 256

// streamArgs builds the consume arguments of a stream subscription from
// its offset (a string or a JSON number; nil = next) and, for SSE, the
// Last-Event-ID it resumes after.
func streamArgs(offset any, lastEventID string) (broker.Table, error) {
	if n, err := strconv.ParseUint(lastEventID, 10, 63); err == nil && n < math.MaxInt64 {
		return broker.Table{"x-stream-offset": int64(n + 1)}, nil
	}
	switch o := offset.(type) {
	case nil:
		return nil, nil
	case string:
		if o == "" {
			return nil, nil
		}
		return broker.Table{"x-stream-offset": o}, nil
	case json.Number:
		n, err := o.Int64()
		if err != nil {
			return nil, fmt.Errorf("offset %s is not an integer", o)
		}
		return broker.Table{"x-stream-offset": n}, nil
	}
	return nil, fmt.Errorf("offset must be first, last, next, an offset or an interval")
}

// resumeOffset is the integer start offset of stream arguments, the form
// a resume takes (herald.js sends the offset after the last one it saw).
func resumeOffset(args broker.Table) (uint64, bool) {
	n, ok := args["x-stream-offset"].(int64)
	if !ok || n < 0 {
		return 0, false
	}
	return uint64(n), true
}

// streamQueue resolves a stream by name for a reader.
func (s *Server) streamQueue(u *auth.User, v *broker.VHost, name string, owner broker.Owner) (*broker.Queue, error) {
	if err := s.check(u, v, auth.Read, auth.Queue, name); err != nil {
		return nil, err
	}
	q, err := v.UsableQueue(name, owner)
	if err != nil {
		return nil, err
	}
	if q.Type() != broker.QueueTypeStream {
		return nil, &broker.Error{Code: broker.CodePreconditionFailed, Text: fmt.Sprintf("queue '%s' is not a stream", name)}
	}
	return q, nil
}

// deliveryOffset is a stream delivery's offset.
func deliveryOffset(d *broker.Delivery) (uint64, bool) {
	if d.Queue == nil || d.Queue.Type() != broker.QueueTypeStream {
		return 0, false
	}
	off, ok := d.Message.Properties.Headers["x-stream-offset"].(int64)
	return uint64(off), ok && off >= 0
}
