package web_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/protocol/httpapi"
	"github.com/heraldmq/herald/internal/web"
)

// sseStream reads a /sse response with net/http.
type sseStream struct {
	t    *testing.T
	resp *http.Response
	rd   *bufio.Reader
}

func (f *fixture) openSSE(query string) *sseStream {
	f.t.Helper()
	req, err := http.NewRequestWithContext(testCtx(f.t), "GET", f.hs.URL+"/sse"+query, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := f.hs.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		f.t.Fatalf("sse: %d %v", resp.StatusCode, resp.Header)
	}
	return &sseStream{t: f.t, resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next reads one event (or comment block) and returns its fields.
func (s *sseStream) next() map[string]string {
	s.t.Helper()
	ev := map[string]string{}
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			s.t.Fatalf("sse read: %v (so far %v)", err, ev)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return ev
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			ev["comment"] = strings.TrimSpace(c)
			continue
		}
		k, v, _ := strings.Cut(line, ": ")
		ev[k] = v
	}
}

func (s *sseStream) nextEvent() map[string]string {
	s.t.Helper()
	for {
		if ev := s.next(); ev["event"] != "" {
			return ev
		}
	}
}

func TestSSE(t *testing.T) {
	f := newFixture(t, web.Config{SSEHeartbeat: 20 * time.Millisecond})
	q := f.declareQueue("feed")
	s := f.openSSE("?exchange=amq.topic&key=orders.%23")
	qs := f.openSSE("?queue=feed")
	f.publish("amq.topic", "orders.eu.new", "o1")
	f.publish("", "feed", "f1")
	ev := s.nextEvent()
	var m httpapi.MessageJSON
	if err := json.Unmarshal([]byte(ev["data"]), &m); err != nil {
		t.Fatal(err)
	}
	if ev["event"] != "message" || ev["id"] == "" || m.Body != "o1" || m.Key != "orders.eu.new" {
		t.Fatalf("event %v", ev)
	}
	ev = qs.nextEvent()
	if !strings.Contains(ev["data"], `"body":"f1"`) {
		t.Fatalf("queue event %v", ev)
	}
	// Auto-ack: written means settled.
	waitFor(t, "the ack", func() bool { st := q.Stats(); return st.Unacked == 0 && st.Ready == 0 })
	for {
		if ev := s.next(); ev["comment"] == "heartbeat" {
			break
		}
	}
	st, _, _ := f.do("GET", "/sse", nil)
	if st != http.StatusBadRequest {
		t.Fatalf("no target: %d", st)
	}
	// The stream ends on Close.
	f.srv.Close()
	for {
		line, err := qs.rd.ReadString('\n')
		if err != nil {
			break
		}
		_ = line
	}
	waitFor(t, "the consumer to go", func() bool { return q.Stats().Consumers == 0 })
}
