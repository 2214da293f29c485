package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/heraldmq/herald/internal/admin"
	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/httpapi"
	"github.com/heraldmq/herald/internal/store"
	"github.com/heraldmq/herald/internal/web"
)

// logSink records log messages so that tests can await one.
type logSink struct {
	mu   sync.Mutex
	msgs []string
	ch   chan string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	select {
	case l.ch <- r.Message:
	default:
	}
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }

type fixture struct {
	t   *testing.T
	b   *broker.Broker
	srv *web.Server
	// users is the user database the server checks logins against.
	users *auth.Users
	hs    *httptest.Server
	logs  *logSink
}

func newFixture(t *testing.T, cfg web.Config) *fixture { return newFixtureOn(t, cfg, nil) }

// newFixtureOn is newFixture with a message log (nil: none).
func newFixtureOn(t *testing.T, cfg web.Config, st *store.Log) *fixture {
	t.Helper()
	b := broker.New(broker.Options{Store: st})
	users := auth.NewDefaultUsers()
	users.SetBcryptCost(4)                                  // bcrypt at cost 10 takes ~0.6 s under -race
	users.Put("alice", "secret", false, auth.TagManagement) // may read the management API
	logs := &logSink{ch: make(chan string, 64)}
	srv := web.New(cfg, b, users, slog.New(logs))
	admin.Mount(srv)
	httpapi.Mount(srv)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &fixture{t: t, b: b, srv: srv, users: users, hs: hs, logs: logs}
}

// do sends a request as guest (loopback) and returns status and body.
func (f *fixture) do(method, path string, body any) (int, []byte, http.Header) {
	f.t.Helper()
	return f.doAs("guest", "guest", method, path, body, nil)
}

func (f *fixture) doAs(user, pass, method, path string, body any, hdr http.Header) (int, []byte, http.Header) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.hs.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := f.hs.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, out, resp.Header
}

// mustJSONStatus asserts the status and decodes the body into v.
func (f *fixture) call(method, path string, body any, want int, v any) {
	f.t.Helper()
	st, out, _ := f.do(method, path, body)
	if st != want {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			f.t.Fatalf("%s %s: %v: %s", method, path, err, out)
		}
	}
}

func (f *fixture) declareQueue(name string) *broker.Queue {
	f.t.Helper()
	q, err := f.b.VHost("/").DeclareQueue(name, broker.QueueOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return q
}

func (f *fixture) publish(ex, key, body string) {
	f.t.Helper()
	if _, err := f.b.VHost("/").Publisher().Publish(&broker.Message{Exchange: ex, RoutingKey: key, Body: []byte(body)}); err != nil {
		f.t.Fatal(err)
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wsClient is a /ws connection driven by coder/websocket.
type wsClient struct {
	t   *testing.T
	c   *websocket.Conn
	ctx context.Context
}

func (f *fixture) dialWS(query string) *wsClient {
	f.t.Helper()
	ctx := testCtx(f.t)
	h := http.Header{}
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("guest", "guest")
	h.Set("Authorization", req.Header.Get("Authorization"))
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.hs.URL, "http")+"/ws"+query, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		f.t.Fatal(err)
	}
	c.SetReadLimit(16 << 20)
	f.t.Cleanup(func() { _ = c.CloseNow() })
	return &wsClient{t: f.t, c: c, ctx: ctx}
}

func (w *wsClient) send(v any) {
	w.t.Helper()
	if err := wsjson.Write(w.ctx, w.c, v); err != nil {
		w.t.Fatal(err)
	}
}

func (w *wsClient) recv() map[string]any {
	w.t.Helper()
	var m map[string]any
	if err := wsjson.Read(w.ctx, w.c, &m); err != nil {
		w.t.Fatal(err)
	}
	return m
}

// expect reads frames until one with the op arrives, failing on an error frame.
func (w *wsClient) expect(op string) map[string]any {
	w.t.Helper()
	for {
		m := w.recv()
		if m["op"] == op {
			return m
		}
		if m["op"] == "error" {
			w.t.Fatalf("waiting for %s: error frame %v", op, m)
		}
	}
}

func (w *wsClient) subscribe(m map[string]any) string {
	w.t.Helper()
	m["op"] = "subscribe"
	w.send(m)
	r := w.expect("subscribed")
	return r["queue"].(string)
}

// waitFor polls a condition the broker exposes no event for.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type msgHolder struct{ Message broker.Message }

func messageFor(ex, body string) *msgHolder {
	return &msgHolder{broker.Message{Exchange: ex, Body: []byte(body)}}
}
