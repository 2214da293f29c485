package admin

import (
	"net/http"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// A stream as the console's Streams page shows it, and the named
// consumers of streams (x-stream-consumer) with their stored positions:
//
//	GET    /api/streams/{vhost}/{name}                       -> StreamJSON
//	GET    /api/streams/{vhost}/{name}/consumers             -> [{"name","offset","stored","members"}]
//	PUT    /api/streams/{vhost}/{name}/consumers/{consumer}  {"offset": N}  (204)
//	DELETE /api/streams/{vhost}/{name}/consumers/{consumer}  (204; 404 if none is stored)
//
// Reading a page of a stream is a messaging endpoint (httpapi/streams.go).

// StreamConsumerJSON is a named consumer of a stream.
type StreamConsumerJSON struct {
	Name    string   `json:"name"`
	Offset  uint64   `json:"offset"`
	Stored  bool     `json:"stored"`
	Members []string `json:"members"`
}

// StreamReaderJSON is a group reading a stream now: one anonymous
// consumer, or the members of a named one.
type StreamReaderJSON struct {
	Name      string   `json:"name"` // x-stream-consumer; "" = anonymous
	Consumers []string `json:"consumers"`
	Offset    uint64   `json:"offset"` // after the last message delivered
	Lag       uint64   `json:"lag"`    // messages from offset to the end
	Unacked   int      `json:"unacked"`
}

// StreamJSON is one stream: its retained range and size, who reads it now
// and the stored positions of its named consumers.
type StreamJSON struct {
	Name        string               `json:"name"`
	VHost       string               `json:"vhost"`
	FirstOffset uint64               `json:"first_offset"`
	LastOffset  int64                `json:"last_offset"` // -1 while empty
	Messages    uint64               `json:"messages"`
	Bytes       int64                `json:"message_bytes"`
	Segments    int                  `json:"segments"`
	Readers     []StreamReaderJSON   `json:"readers"`
	Consumers   []StreamConsumerJSON `json:"consumers"`
}

func (s *Server) streamRoutes(mg func(string, http.HandlerFunc)) {
	mg("GET /api/streams/{vhost}/{name}", s.getStream)
	mg("GET /api/streams/{vhost}/{name}/consumers", s.listStreamConsumers)
	mg("PUT /api/streams/{vhost}/{name}/consumers/{consumer}", s.putStreamConsumer)
	mg("DELETE /api/streams/{vhost}/{name}/consumers/{consumer}", s.deleteStreamConsumer)
}

// streamOf resolves the stream of the path after checking kind on it.
func (s *Server) streamOf(w http.ResponseWriter, r *http.Request, kind auth.Kind) *broker.Queue {
	_, q := s.inspectedQueue(w, r, kind)
	if q == nil {
		return nil
	}
	if _, ok := q.StreamInfo(); !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "queue '"+q.Name()+"' is not a stream")
		return nil
	}
	return q
}

func (s *Server) getStream(w http.ResponseWriter, r *http.Request) {
	q := s.streamOf(w, r, auth.Read)
	if q == nil {
		return
	}
	si, _ := q.StreamInfo()
	readers, err := q.StreamReaders()
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	cs, err := q.StreamConsumers()
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := StreamJSON{Name: q.Name(), VHost: r.PathValue("vhost"), FirstOffset: si.FirstOffset,
		LastOffset: int64(si.NextOffset) - 1, Messages: si.Messages, Bytes: si.Bytes, Segments: si.Segments,
		Readers: make([]StreamReaderJSON, 0, len(readers)), Consumers: make([]StreamConsumerJSON, 0, len(cs))}
	for _, x := range readers {
		out.Readers = append(out.Readers, StreamReaderJSON{Name: x.Name, Consumers: x.Consumers, Offset: x.Offset, Lag: x.Lag, Unacked: x.Unacked})
	}
	for _, c := range cs {
		out.Consumers = append(out.Consumers, StreamConsumerJSON{Name: c.Name, Offset: c.Offset, Stored: c.Stored, Members: c.Members})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listStreamConsumers(w http.ResponseWriter, r *http.Request) {
	q := s.streamOf(w, r, auth.Read)
	if q == nil {
		return
	}
	cs, err := q.StreamConsumers()
	if err != nil {
		writeBrokerError(w, err)
		return
	}
	out := make([]StreamConsumerJSON, 0, len(cs))
	for _, c := range cs {
		out = append(out, StreamConsumerJSON{Name: c.Name, Offset: c.Offset, Stored: c.Stored, Members: c.Members})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) putStreamConsumer(w http.ResponseWriter, r *http.Request) {
	q := s.streamOf(w, r, auth.Write)
	if q == nil {
		return
	}
	var req struct {
		Offset *int64 `json:"offset"`
	}
	if !s.decodeBody(w, r, &req) {
		return
	}
	if req.Offset == nil || *req.Offset < 0 {
		writeError(w, http.StatusBadRequest, "bad_request", "offset must be a non-negative integer")
		return
	}
	if err := q.SetStreamOffset(r.PathValue("consumer"), uint64(*req.Offset)); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteStreamConsumer(w http.ResponseWriter, r *http.Request) {
	q := s.streamOf(w, r, auth.Write)
	if q == nil {
		return
	}
	if err := q.DeleteStreamOffset(r.PathValue("consumer")); err != nil {
		writeBrokerError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
