package browser

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// pushPage is an application page on its own origin (the test's page
// server), as a real site using Herald would be: it loads /herald.js from
// Herald, opens the /ws socket with herald.js and an EventSource on /sse,
// and lists what arrives. The Herald address comes in ?herald=host:port.
const pushPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Herald push test</title></head>
<body>
<h1>Herald push test</h1>
<p>WebSocket: <span id="ws-state">connecting</span>, SSE: <span id="sse-state">connecting</span></p>
<h2>WebSocket</h2><ul id="ws"></ul>
<h2>SSE</h2><ul id="sse"></ul>
<h2>Errors</h2><ul id="errors"></ul>
<script>
"use strict";
const herald = new URLSearchParams(location.search).get("herald");
window.state = { ws: [], sse: [], errors: [], wsReady: false, sseReady: false };
function show(list, text) {
  const li = document.createElement("li");
  li.textContent = text;
  document.getElementById(list).append(li);
}
function fail(text) { state.errors.push(text); show("errors", text); }
function load(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error("cannot load " + src));
    document.head.append(s);
  });
}
(async () => {
  try {
    await load("http://" + herald + "/herald.js");
    const h = await Herald.connect("ws://" + herald + "/ws", {
      onerror: (e) => fail("herald: " + JSON.stringify(e)),
      onclose: (code, reason) => fail("socket closed: " + code + " " + reason),
    });
    window.h = h;
    await h.subscribe({ exchange: "amq.topic", key: "news.#" }, (m) => {
      state.ws.push({ key: m.key, body: m.body });
      show("ws", m.key + ": " + m.body);
    });
    state.wsReady = true;
    document.getElementById("ws-state").textContent = "subscribed";
  } catch (e) {
    fail("websocket: " + (e && e.message ? e.message : e && e.type ? "event " + e.type : String(e)));
  }
  // Cross-origin: withCredentials sends the browser's basic credentials
  // for Herald's origin; Herald's CORS answer allows them for this origin.
  const es = new EventSource("http://" + herald + "/sse?exchange=amq.topic&key=news.%23", { withCredentials: true });
  es.onopen = () => { state.sseReady = true; document.getElementById("sse-state").textContent = "open"; };
  es.addEventListener("message", (ev) => {
    const m = JSON.parse(ev.data);
    state.sse.push({ key: m.key, body: m.body });
    show("sse", m.key + ": " + m.body);
  });
  es.onerror = () => fail("sse error, readyState " + es.readyState);
  window.es = es;
})();
</script>
</body></html>
`

const pushDiag = `JSON.stringify({state: window.state, text: document.body.innerText})`

// TestBrowserPushOverWebSocketAndSSE: a page on another origin gets a
// message published over AMQP both through herald.js (/ws) and through
// EventSource (/sse), then publishes through herald.js to an AMQP consumer.
func TestBrowserPushOverWebSocketAndSSE(t *testing.T) {
	chromiumPath(t) // fail (or skip) before starting anything
	begin := time.Now()
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, pushPage)
	}))
	t.Cleanup(pages.Close)
	h := startHerald(t, pages.URL)
	_, ch := h.dial(t)
	b := startBrowser(t) // after the servers: its cleanup (closing it) runs first

	// Authentication: /ws and /sse need HTTP basic credentials, and a page
	// cannot set headers on a WebSocket or an EventSource (herald.js has
	// no in-band login). So the browser learns them the way a user's
	// browser does: a top-level navigation to a Herald URL with user:pass@
	// answers Herald's 401 challenge and stores the credentials in the
	// browser's HTTP auth cache for Herald's origin. They are then sent
	// preemptively under the URL's directory ("/" for /sse) and for a 401
	// of the same realm anywhere on the origin, which covers the WebSocket
	// handshake and the credentialed (withCredentials) EventSource. Without
	// this step the socket fails with "HTTP Authentication failed".
	credURL := "http://guest:guest@" + h.host + "/sse"
	b.do("cache credentials", chromedp.Navigate(credURL))
	// Herald answers 400 (no queue or exchange given) once authenticated,
	// 401 otherwise.
	if text := eval[string](b, "auth check", `document.body ? document.body.innerText : ""`); !strings.Contains(text, "give either queue or exchange") {
		t.Fatalf("authenticating with %s failed: %q", credURL, text)
	}

	b.do("open the page", chromedp.Navigate(pages.URL+"/?herald="+h.host))
	b.waitFor("the WebSocket subscription and the EventSource", "state.wsReady && state.sseReady", pushDiag, 15*time.Second)
	ready := time.Since(begin)

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	body := "breaking news " + strconv.FormatInt(time.Now().UnixNano(), 10)
	// First a key outside news.#: published before the matching one on the
	// same channel, it would arrive first if it were wrongly routed.
	if err := ch.PublishWithContext(ctx, "amq.topic", "sports.football", false, false,
		amqp.Publishing{ContentType: "text/plain", Body: []byte("not news")}); err != nil {
		t.Fatal(err)
	}
	if err := ch.PublishWithContext(ctx, "amq.topic", "news.world", false, false,
		amqp.Publishing{ContentType: "text/plain", Body: []byte(body)}); err != nil {
		t.Fatal(err)
	}
	published := time.Now()
	b.waitFor("the AMQP message over the WebSocket",
		`state.ws.some(m => m.key === "news.world" && m.body === `+strconv.Quote(body)+`) && document.getElementById("ws").textContent.includes(`+strconv.Quote(body)+`)`,
		pushDiag, 10*time.Second)
	b.waitFor("the AMQP message over SSE",
		`state.sse.some(m => m.key === "news.world" && m.body === `+strconv.Quote(body)+`) && document.getElementById("sse").textContent.includes(`+strconv.Quote(body)+`)`,
		pushDiag, 10*time.Second)
	pushed := time.Since(published)
	if got := eval[string](b, "page state", `JSON.stringify([state.ws.map(m => m.key), state.sse.map(m => m.key), state.errors])`); got != `[["news.world"],["news.world"],[]]` {
		t.Fatalf("page state [ws keys, sse keys, errors] = %s, want only news.world on each and no error", got)
	}

	// The reverse: the page publishes through herald.js, AMQP consumes.
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "from.browser", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	msgs, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	routed := eval[bool](b, "publish from the page",
		`h.publish("amq.topic", "from.browser", "hello from chromium", {confirm: true, properties: {content_type: "text/plain"}}).then(r => r.routed)`)
	if !routed {
		t.Fatal("herald.js publish was confirmed but not routed")
	}
	select {
	case d := <-msgs:
		if string(d.Body) != "hello from chromium" || d.RoutingKey != "from.browser" || d.ContentType != "text/plain" {
			t.Fatalf("AMQP got %q key %q content type %q", d.Body, d.RoutingKey, d.ContentType)
		}
	case <-ctx.Done():
		t.Fatal("the AMQP consumer did not get the message the page published")
	}
	t.Logf("timings: page subscribed %v after start; AMQP -> browser (WS and SSE) %v; total %v",
		ready.Round(time.Millisecond), pushed.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
}
