package web_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/web"
)

// TestCounters: the web side of herald_connections_opened_total,
// _closed_total, herald_auth_failures_total and
// herald_protocol_errors_total.
func TestCounters(t *testing.T) {
	m := metrics.New(nil)
	f := newFixture(t, web.Config{Counters: m.Counters, MaxBodySize: 1024})
	names := map[string]string{"opened": "herald_connections_opened_total", "closed": "herald_connections_closed_total",
		"auth": "herald_auth_failures_total", "protocol": "herald_protocol_errors_total"}
	// count scrapes one counter, as Prometheus would.
	count := func(name, label string) float64 {
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		prefix := names[name] + `{protocol="` + label + `"} `
		sc := bufio.NewScanner(rec.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
				n, _ := strconv.ParseFloat(v, 64)
				return n
			}
		}
		return 0
	}

	// Refused logins, by endpoint; a request without credentials is a
	// challenge and counts nothing. (alice's hash is cheap: bcrypt cost 4.)
	if st, _, _ := f.doAs("alice", "wrong", "GET", "/api/overview", nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", st)
	}
	f.doAs("", "", "GET", "/api/overview", nil, nil)
	f.doAs("alice", "wrong", "GET", "/ws", nil, nil)
	f.doAs("alice", "wrong", "GET", "/sse?queue=q", nil, nil)
	f.doAs("", "", "GET", "/api/queues", nil, http.Header{"Authorization": {"Bearer x.y.z"}})
	if a, w, s := count("auth", "http"), count("auth", "websocket"), count("auth", "sse"); a != 2 || w != 1 || s != 1 {
		t.Fatalf("auth failures http=%v websocket=%v sse=%v", a, w, s)
	}

	// A /ws socket: opened, closed; a normal close is no protocol error.
	ws := f.dialWS("")
	waitFor(t, "ws opened", func() bool { return count("opened", "websocket") == 1 })
	_ = ws.c.Close(websocket.StatusNormalClosure, "bye")
	waitFor(t, "ws closed", func() bool { return count("closed", "websocket") == 1 })
	// Nor is a client that drops the TCP connection without a close frame.
	ws = f.dialWS("")
	_ = ws.c.CloseNow()
	waitFor(t, "ws dropped", func() bool { return count("closed", "websocket") == 2 })
	if n := count("protocol", "websocket"); n != 0 {
		t.Fatalf("protocol errors after clean closes: %v", n)
	}
	// A message beyond MaxBodySize breaks the protocol: the library
	// closes with 1009.
	ws = f.dialWS("")
	if err := ws.c.Write(ws.ctx, websocket.MessageText, []byte(strings.Repeat("x", 4096))); err != nil {
		t.Fatal(err)
	}
	// Reading answers the server's close frame.
	if _, _, err := ws.c.Read(ws.ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("read after an oversized message: %v", err)
	}
	waitFor(t, "ws closed", func() bool { return count("closed", "websocket") == 3 })
	if n := count("protocol", "websocket"); n != 1 {
		t.Fatalf("protocol errors: %v", n)
	}

	// An SSE stream.
	f.declareQueue("q")
	f.openSSE("?queue=q")
	waitFor(t, "sse opened", func() bool { return count("opened", "sse") == 1 })
}
