package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/store"
	"github.com/heraldmq/herald/internal/web"
)

// diskFixture is a fixture whose broker keeps a message log on an
// in-memory file system (so a test can hold its fsyncs), with a durable
// queue "keep".
func diskFixture(t *testing.T) (*fixture, *store.MemFS) {
	t.Helper()
	fs := store.NewMemFS()
	st, _, err := store.Open("/data/log", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the fixture's cleanup
	f := newFixtureOn(t, web.Config{}, st)
	if _, err := f.b.VHost("/").DeclareQueue("keep", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	return f, fs
}

// TestHTTPPublishWaitsForDisk: the HTTP publish endpoints answer a
// persistent message that a durable queue took once it is on disk; a
// transient one at once.
func TestHTTPPublishWaitsForDisk(t *testing.T) {
	f, fs := diskFixture(t)
	release := fs.HoldSyncs()
	t.Cleanup(release)
	// Transient: answered while the disk is held.
	var routed map[string]bool
	f.call("POST", "/api/exchanges/%2F/amq.default/publish",
		map[string]any{"routing_key": "keep", "payload": "t", "payload_encoding": "string", "properties": map[string]any{}},
		http.StatusOK, &routed)

	type answer struct {
		status int
		body   string
	}
	post := func(path, body string, hdr http.Header) <-chan answer {
		ch := make(chan answer, 1)
		req, err := http.NewRequest("POST", f.hs.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("guest", "guest")
		for k, v := range hdr {
			req.Header[k] = v
		}
		go func() {
			resp, err := f.hs.Client().Do(req)
			if err != nil {
				ch <- answer{0, err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			ch <- answer{resp.StatusCode, string(b)}
		}()
		return ch
	}
	q, _ := f.b.VHost("/").Queue("keep")
	a1 := post("/api/exchanges/%2F/amq.default/publish",
		`{"routing_key":"keep","payload":"p1","payload_encoding":"string","properties":{"delivery_mode":2}}`, nil)
	a2 := post("/v1/publish/amq.default/keep", "p2", http.Header{"X-Herald-Delivery-Mode": {"persistent"}})
	waitFor(t, "both persistent messages routed", func() bool { return q.Stats().Ready == 3 })
	select {
	case a := <-a1:
		t.Fatalf("answered before the fsync: %v", a)
	case a := <-a2:
		t.Fatalf("answered before the fsync: %v", a)
	default:
	}
	release()
	for _, ch := range []<-chan answer{a1, a2} {
		a := <-ch
		if a.status != http.StatusOK || !strings.Contains(a.body, `"routed":true`) {
			t.Fatalf("answer %d %s", a.status, a.body)
		}
	}
}

// TestWSConfirmWaitsForDisk: /ws "confirmed" for a persistent message that
// a durable queue took comes once it is on disk, in order with the other
// publishes' answers; other frames ("pong") are not held back.
func TestWSConfirmWaitsForDisk(t *testing.T) {
	f, fs := diskFixture(t)
	w := f.dialWS("")
	release := fs.HoldSyncs()
	t.Cleanup(release)
	// Nothing waiting, nothing stored: at once.
	w.send(map[string]any{"op": "publish", "key": "keep", "body": "t0", "confirm": true, "id": 0})
	if m := w.expect("confirmed"); m["id"] != "0" {
		t.Fatalf("confirmed %v", m)
	}
	w.send(map[string]any{"op": "publish", "key": "keep", "body": "p1", "properties": map[string]any{"delivery_mode": 2}, "confirm": true, "id": 1})
	w.send(map[string]any{"op": "publish", "key": "keep", "body": "t2", "confirm": true, "id": 2})
	w.send(map[string]any{"op": "publish", "exchange": "nope", "key": "keep", "body": "t3", "confirm": true, "id": 3})
	w.send(map[string]any{"op": "ping", "id": "probe"})
	if m := w.recv(); m["op"] != "pong" {
		t.Fatalf("got %v before pong", m)
	}
	release()
	var got []string
	for range 3 {
		m := w.recv()
		b, _ := json.Marshal(m)
		got = append(got, string(b))
	}
	want := []string{`"id":"1","op":"confirmed"`, `"id":"2","op":"confirmed"`, `"id":"3","message"`}
	for i, s := range got {
		if !strings.Contains(s, want[i]) {
			t.Fatalf("answers %v, want in order %v", got, want)
		}
	}
}
