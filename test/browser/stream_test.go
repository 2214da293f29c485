package browser

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// cutProxy forwards TCP connections to target until cut drops every one
// open now: a network failure in the middle of an EventSource stream.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { _ = ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); _ = up.Close() }()
		go func() { defer p.wg.Done(); _, _ = io.Copy(c, up); _ = c.Close() }()
	}
}

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

const streamPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Herald stream test</title></head>
<body><ul id="events"></ul>
<script>
"use strict";
const herald = new URLSearchParams(location.search).get("herald");
window.state = { events: [], opens: 0, errors: 0 };
const es = new EventSource("http://" + herald + "/sse?stream=feed&offset=first", { withCredentials: true });
es.onopen = () => { state.opens++; };
es.onerror = () => { state.errors++; };
es.addEventListener("message", (ev) => {
  const m = JSON.parse(ev.data);
  state.events.push({ id: ev.lastEventId, body: m.body, offset: m.offset });
  const li = document.createElement("li");
  li.textContent = ev.lastEventId + ": " + m.body;
  document.getElementById("events").append(li);
});
</script></body></html>
`

// TestBrowserEventSourceResumesStream: a real EventSource reading a stream
// loses its connection mid-stream, reconnects by itself with
// Last-Event-ID, and gets exactly the events after the last one it saw:
// nothing twice, nothing missed.
func TestBrowserEventSourceResumesStream(t *testing.T) {
	chromiumPath(t)
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, streamPage)
	}))
	t.Cleanup(pages.Close)
	h := startHerald(t, pages.URL)
	proxy := newCutProxy(t, h.host)
	_, ch := h.dial(t)
	if _, err := ch.QueueDeclare("feed", true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for i := from; i < to; i++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "feed", false, false, amqp.Publishing{Body: []byte("event-" + string(rune('a'+i)))})
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := dc.WaitContext(ctx); !ok || err != nil {
				t.Fatalf("confirm %d: %v %v", i, ok, err)
			}
		}
	}
	publish(0, 5)
	b := startBrowser(t)
	addr := proxy.ln.Addr().String()
	b.do("cache credentials", chromedp.Navigate("http://guest:guest@"+addr+"/sse")) // 400 once authenticated
	b.do("open the page", chromedp.Navigate(pages.URL+"/?herald="+addr))
	diag := `JSON.stringify({state: window.state, text: document.body.innerText})`
	waitJS(t, b, "the first five events", "state.events.length === 5", diag, 15*time.Second)
	proxy.cut()
	waitJS(t, b, "the EventSource noticing the cut", "state.errors >= 1", diag, 15*time.Second)
	publish(5, 10)
	waitJS(t, b, "the events after the reconnect", "state.events.length >= 10 && state.opens >= 2", diag, 20*time.Second)
	got := eval[string](b, "event ids", `state.events.map(e => e.id + "=" + e.offset + ":" + e.body).join(",")`)
	var want []string
	for i := range 10 {
		want = append(want, strconv.Itoa(i)+"="+strconv.Itoa(i)+":event-"+string(rune('a'+i)))
	}
	if got != strings.Join(want, ",") {
		t.Fatalf("events\n got %s\nwant %s", got, strings.Join(want, ","))
	}
}

const heraldJSStreamPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Herald stream resume test</title></head>
<body><ul id="events"></ul>
<script>
"use strict";
const herald = new URLSearchParams(location.search).get("herald");
window.state = { events: [], connects: 0, closes: 0, errors: [], answers: [] };
const s = document.createElement("script");
s.src = "http://" + herald + "/herald.js";
s.onload = async () => {
  try {
    const h = await Herald.connect("ws://" + herald + "/ws", {
      minDelay: 100, maxDelay: 400,
      onconnect: () => { state.connects++; },
      onclose: () => { state.closes++; },
      onerror: (e) => state.errors.push(String(e && e.message || JSON.stringify(e))),
    });
    await h.subscribe({ stream: "feed", offset: "first" }, (m) => {
      state.events.push(m.offset + ":" + m.body);
      const li = document.createElement("li");
      li.textContent = m.offset + ": " + m.body;
      document.getElementById("events").append(li);
    }, { onsubscribed: (a) => state.answers.push(a.recovered === undefined ? "-" : String(a.recovered)) });
  } catch (e) { state.errors.push(String(e)); }
};
document.head.append(s);
</script></body></html>
`

// TestBrowserHeraldJSResumesStream: herald.js loses its socket, opens a
// new one and subscribes to the stream again right after the last offset
// it delivered: nothing twice, nothing missed, and the answer says
// recovered.
func TestBrowserHeraldJSResumesStream(t *testing.T) {
	chromiumPath(t)
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, heraldJSStreamPage)
	}))
	t.Cleanup(pages.Close)
	h := startHerald(t, pages.URL)
	proxy := newCutProxy(t, h.host)
	_, ch := h.dial(t)
	if _, err := ch.QueueDeclare("feed", true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.Confirm(false))
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "feed", false, false, amqp.Publishing{Body: []byte("m" + strconv.Itoa(i))})
			must(err)
			if !dc.Wait() {
				t.Fatalf("publish %d nacked", i)
			}
		}
	}
	publish(0, 5)
	b := startBrowser(t)
	addr := proxy.ln.Addr().String()
	b.do("cache credentials", chromedp.Navigate("http://guest:guest@"+addr+"/sse"))
	b.do("open the page", chromedp.Navigate(pages.URL+"/?herald="+addr))
	diag := `JSON.stringify({state: window.state, text: document.body.innerText})`
	waitJS(t, b, "the first five messages", "state.events.length === 5", diag, 15*time.Second)
	proxy.cut()
	waitJS(t, b, "herald.js reconnecting", "state.connects >= 2", diag, 15*time.Second)
	publish(5, 10)
	waitJS(t, b, "the messages after the reconnect", "state.events.length >= 10", diag, 15*time.Second)
	got := eval[string](b, "offsets", `state.events.join(",") + "|" + state.errors.join(";")`)
	// The first subscribe ("first") is no resume; the one after the
	// reconnect resumes at offset 5 and lost nothing.
	if answers := eval[string](b, "subscribe answers", `state.answers.join(",")`); answers != "-,true" {
		t.Fatalf("subscribe answers' recovered flags %q, want \"-,true\"", answers)
	}
	var want []string
	for i := range 10 {
		want = append(want, strconv.Itoa(i)+":m"+strconv.Itoa(i))
	}
	if got != strings.Join(want, ",")+"|" {
		t.Fatalf("messages\n got %s\nwant %s|", got, strings.Join(want, ","))
	}
}

// waitJS polls cond in the page every 50ms until it is true, for at most
// d. Unlike browser.waitFor it evaluates afresh each time, so an
// evaluation that meets a page context chromium has just replaced
// ("Cannot find context", right after a navigation) is only retried.
func waitJS(t *testing.T, b *browser, what, cond, diag string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		var v bool
		v, err = chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && v {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	state, derr := chromedp.Run(ctx, chromedp.Evaluate[string](diag))
	cancel()
	t.Fatalf("waiting for %s (%s): not true after %v (last error %v)\npage state: %s %v\npage log:\n%s", what, cond, d, err, state, derr, b.pageLog())
}
