package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeCentrifugo speaks the part of Centrifugo's JSON protocol the bench
// uses: connect, subscribe, publish (pushed to every subscriber of the
// channel, newline-batched replies), and one server ping per client,
// which must be answered.
type fakeCentrifugo struct {
	mu    sync.Mutex
	subs  map[*websocket.Conn]bool
	pongs int
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != centrifugoPath {
		http.NotFound(w, r)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := r.Context()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			f.mu.Lock()
			delete(f.subs, c)
			f.mu.Unlock()
			return
		}
		for _, line := range splitLines(b) {
			if string(line) == centrifugoPing {
				f.mu.Lock()
				f.pongs++
				f.mu.Unlock()
				continue
			}
			var cmd struct {
				ID        int             `json:"id"`
				Connect   json.RawMessage `json:"connect"`
				Subscribe *struct{ Channel string }
				Publish   *struct {
					Channel string
					Data    json.RawMessage
				}
			}
			if json.Unmarshal(line, &cmd) != nil {
				_ = c.Close(3501, "bad request")
				return
			}
			var reply string
			switch {
			case cmd.Connect != nil:
				reply = `{"id":1,"connect":{"client":"x","ping":25,"pong":true}}` + "\n" + centrifugoPing // and a ping
			case cmd.Subscribe != nil:
				f.mu.Lock()
				f.subs[c] = true
				f.mu.Unlock()
				reply = `{"id":2,"subscribe":{}}`
			case cmd.Publish != nil:
				push := []byte(`{"push":{"channel":"` + cmd.Publish.Channel + `","pub":{"data":` + string(cmd.Publish.Data) + `}}}`)
				f.mu.Lock()
				var to []*websocket.Conn
				for s := range f.subs {
					to = append(to, s)
				}
				f.mu.Unlock()
				for _, s := range to {
					_ = s.Write(ctx, websocket.MessageText, push)
				}
				reply = fmt.Sprintf(`{"id":%d,"publish":{}}`, cmd.ID)
			}
			if err := c.Write(ctx, websocket.MessageText, []byte(reply)); err != nil {
				return
			}
		}
	}
}

func TestWSFanoutCentrifugoDialect(t *testing.T) {
	f := &fakeCentrifugo{subs: map[*websocket.Conn]bool{}}
	hs := httptest.NewServer(f)
	t.Cleanup(hs.Close)
	cfg := DefaultConfig()
	cfg.URL = "ws" + strings.TrimPrefix(hs.URL, "http") + centrifugoPath
	cfg.Scenario = ScenarioWSFanout
	cfg.Subscribers = 10
	cfg.Rate = 100
	cfg.Duration = 500 * time.Millisecond
	cfg.Warmup = 100 * time.Millisecond
	res := runLogged(t, cfg)
	if res.Lost != 0 || res.Malformed != 0 || res.Sent == 0 || res.Received != res.Sent*10 {
		t.Errorf("sent %d received %d lost %d malformed %d", res.Sent, res.Received, res.Lost, res.Malformed)
	}
	if !strings.Contains(res.Description, "Centrifugo channel 'ticks'") {
		t.Errorf("description %q", res.Description)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		f.mu.Lock()
		p := f.pongs
		f.mu.Unlock()
		if p >= 11 { // every subscriber and the publisher answered its ping
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d pongs, want 11", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
