package browser

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/web"
)

// realtimePage is an application page on its own origin that logs in to
// Herald with a JWT through herald.js (in-band connect: a page cannot set
// headers on a WebSocket) and records what happens in window.log. The
// test drives it with eval. Query: ?herald=host:port&token=JWT.
const realtimePage = `<!doctype html>
<html><head><meta charset="utf-8"><title>Herald realtime test</title></head>
<body><h1>Herald realtime test</h1><pre id="out"></pre>
<script>
"use strict";
const q = new URLSearchParams(location.search);
const herald = q.get("herald"), token = q.get("token"), tokenFrom = q.get("tokenfrom");
// With ?tokenfrom=URL the page fetches a fresh token for every connect
// and refresh, as an app asks its own backend.
window.tokenCalls = 0;
const getToken = tokenFrom ? () => { tokenCalls++; return fetch(tokenFrom).then((r) => r.text()); } : () => token;
window.log = { state: [], msgs: [], user: [], joins: [], leaves: [], presence: [], errors: [], closes: [], rtc: [] };
function load(src) {
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = resolve;
    s.onerror = () => reject(new Error("cannot load " + src));
    document.head.append(s);
  });
}
window.started = false;
(async () => {
  await load("http://" + herald + "/herald.js");
  window.h = await Herald.connect("ws://" + herald + "/ws", {
    getToken, minDelay: 200, maxDelay: 1000,
    onstate: (s) => log.state.push(s),
    onclose: (code, reason) => log.closes.push(code + " " + reason),
    onerror: (e) => log.errors.push(e && e.message ? e.message : JSON.stringify(e)),
  });
  h.onUser((m) => log.user.push({ body: m.body, from: m.properties.user_id }));
  window.started = true;
})().catch((e) => log.errors.push("start: " + e.message));
</script>
</body></html>
`

const realtimeDiag = `JSON.stringify({log: window.log, state: window.h && h.state, client: window.h && h.client})`

var rtSecret = []byte("browser-test-secret-0123456789abcdef")

// rtToken is a JWT for user with every permission in the vhost "/".
func rtToken(t *testing.T, user string) string { return rtTokenFor(t, user, time.Hour) }

// rtTokenFor is rtToken valid for d.
func rtTokenFor(t *testing.T, user string, d time.Duration) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": now.Add(d).Unix(), "iat": now.Unix(),
		"scope": "herald.configure:%2F/.* herald.write:%2F/.* herald.read:%2F/.*",
		"info":  map[string]any{"name": strings.ToUpper(user[:1]) + user[1:]},
	}).SignedString(rtSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// servePage serves one page on its own origin.
func servePage(t *testing.T, html string) *httptest.Server {
	t.Helper()
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, html)
	}))
	t.Cleanup(pages.Close)
	return pages
}

// startRealtime starts Herald with bearer tokens and the page server
// allowed as an origin.
func startRealtime(t *testing.T) (*herald, *httptest.Server) {
	t.Helper()
	pages := servePage(t, realtimePage)
	h := startHeraldWeb(t, web.Config{CORSOrigins: []string{pages.URL}, JWT: web.JWTConfig{HS256Secret: rtSecret}})
	return h, pages
}

// newTab opens another tab of the same browser (another page, its own
// socket), closed at cleanup before the browser.
func (b *browser) newTab() *browser {
	b.t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	nb := &browser{t: b.t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		b.t.Fatalf("new tab: %v", err)
	}
	console := chromedp.Console(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m, err := range console {
			if err != nil {
				return
			}
			nb.log("console: " + m.String())
		}
	}()
	b.t.Cleanup(func() { cancel(); wg.Wait() })
	return nb
}

// openAs loads the realtime page logged in as user and waits for herald.js.
func (b *browser) openAs(h *herald, pages *httptest.Server, user string) {
	b.t.Helper()
	b.do("open the page as "+user, chromedp.Navigate(pages.URL+"/?herald="+h.host+"&token="+url.QueryEscape(rtToken(b.t, user))))
	b.waitFor(user+"'s herald.js to connect", "window.started === true", realtimeDiag, 15*time.Second)
}

// api calls Herald's HTTP API as guest and decodes the answer into v.
func (h *herald) api(t *testing.T, method, path, body string, v any) {
	t.Helper()
	req, err := http.NewRequest(method, h.httpURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("X-Reason", "test kills the socket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// waitAPI polls Herald's API until cond holds.
func waitAPI(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBrowserReconnectRecoversQueue: the server kills the page's socket
// (DELETE /api/connections/{name}); what is published meanwhile to the
// page's queue subscription reaches it once herald.js has reconnected and
// resubscribed, and every message arrives exactly once.
func TestBrowserReconnectRecoversQueue(t *testing.T) {
	h, pages := startRealtime(t)
	_, ch := h.dial(t)
	if _, err := ch.QueueDeclare("rq", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	b := startBrowser(t)
	b.openAs(h, pages, "alice")
	eval[bool](b, "subscribe", `h.subscribe({queue: "rq", ack: "client", prefetch: 50}, (m) => { log.msgs.push(m.body); m.ack(); }).then(() => true)`)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(from, to int) {
		for i := from; i <= to; i++ {
			if err := ch.PublishWithContext(ctx, "", "rq", false, false, amqp.Publishing{Body: []byte(strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, 20)
	b.waitFor("the first 20 messages", "log.msgs.length === 20", realtimeDiag, 10*time.Second)
	// Every delivery acknowledged, so that none can come twice.
	queueIdle := func() bool {
		var q struct {
			Unacked int `json:"messages_unacknowledged"`
			Ready   int `json:"messages_ready"`
		}
		h.api(t, "GET", "/api/queues/%2F/rq", "", &q)
		return q.Unacked == 0 && q.Ready == 0
	}
	waitAPI(t, "the acks", queueIdle)

	var conns []struct {
		Name     string `json:"name"`
		User     string `json:"user"`
		Protocol string `json:"protocol"`
	}
	h.api(t, "GET", "/api/connections", "", &conns)
	i := slices.IndexFunc(conns, func(c struct {
		Name     string `json:"name"`
		User     string `json:"user"`
		Protocol string `json:"protocol"`
	}) bool {
		return c.User == "alice"
	})
	if i < 0 {
		t.Fatalf("alice's socket is not in %+v", conns)
	}
	h.api(t, "DELETE", "/api/connections/"+url.PathEscape(conns[i].Name), "", nil)
	// Published while the page is away (its queue keeps them).
	publish(21, 40)
	// The page publishes too while disconnected: herald.js holds the
	// frame and sends it once it is back; the confirm comes then.
	b.waitFor("the page to see the close", "log.closes.length === 1", realtimeDiag, 10*time.Second)
	eval[bool](b, "publish while away", `h.publish("", "rq", "41", {confirm: true}).then((r) => r.routed)`)
	b.waitFor("the page to reconnect and get the rest", `log.msgs.length >= 41 && h.state === "connected"`, realtimeDiag, 15*time.Second)
	got := eval[[]string](b, "messages", "log.msgs")
	if len(got) != 41 {
		t.Fatalf("got %d messages, want 41 once each: %v", len(got), got)
	}
	seen := map[string]bool{}
	for _, m := range got {
		if seen[m] {
			t.Fatalf("message %s twice: %v", m, got)
		}
		seen[m] = true
	}
	for i := 1; i <= 41; i++ {
		if !seen[strconv.Itoa(i)] {
			t.Fatalf("message %d missing: %v", i, got)
		}
	}
	closes := eval[[]string](b, "closes", "log.closes")
	if len(closes) != 1 || !strings.HasPrefix(closes[0], "1008 test kills the socket") {
		t.Fatalf("closes %v", closes)
	}
	if st := eval[[]string](b, "states", "log.state"); !slices.Contains(st, "disconnected") {
		t.Fatalf("states %v", st)
	}
	waitAPI(t, "the queue to drain", queueIdle)
}

// TestBrowserPresenceUserMessagesAndWebRTC: two pages (alice and bob) see
// each other join and leave a channel, send each other per-user messages
// (and a backend sends to bob over HTTP), and open a WebRTC data channel
// signalled through Herald alone.
func TestBrowserPresenceUserMessagesAndWebRTC(t *testing.T) {
	h, pages := startRealtime(t)
	// No mDNS names for host candidates (nothing resolves them here), and
	// loopback candidates allowed: the peers meet on 127.0.0.1.
	b := startBrowser(t, chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("allow-loopback-in-peer-connection", true))
	alice := b
	bob := b.newTab()
	alice.openAs(h, pages, "alice")
	bob.openAs(h, pages, "bob")

	const sub = `h.subscribe({exchange: "amq.topic", key: "room1", presence: true, join_leave: true}, () => {},
		{onjoin: (e) => log.joins.push(e.user + ":" + e.info.name), onleave: (e) => log.leaves.push(e.user),
		 onpresence: (cs) => log.presence.push(cs.map((c) => c.user).sort().join(","))}).then(() => true)`
	eval[bool](alice, "alice subscribes", sub)
	eval[bool](bob, "bob subscribes", sub)
	alice.waitFor("alice to see bob join", `log.joins.includes("bob:Bob")`, realtimeDiag, 10*time.Second)
	if got := eval[string](alice, "presence", `h.presence("amq.topic/room1").then((cs) => cs.map((c) => c.user + ":" + c.info.name).join(","))`); got != "alice:Alice,bob:Bob" {
		t.Fatalf("presence %q", got)
	}
	if got := eval[[]string](bob, "bob's first set", "log.presence"); !slices.Equal(got, []string{"alice,bob"}) {
		t.Fatalf("bob's onpresence %v", got)
	}
	var st struct{ Clients, Users int }
	h.api(t, "GET", "/api/presence/%2F/amq.topic%2Froom1/stats", "", &st)
	if st.Clients != 2 || st.Users != 2 {
		t.Fatalf("stats %+v", st)
	}

	// Per-user messages: page to page, and from a backend.
	eval[bool](alice, "alice sends to bob", `h.send("bob", "hello bob", {confirm: true}).then(() => true)`)
	bob.waitFor("bob to get alice's message", `log.user.some((m) => m.body === "hello bob" && m.from === "alice")`, realtimeDiag, 10*time.Second)
	h.api(t, "POST", "/api/users/%2F/bob/messages", `{"payload":"from the backend"}`, nil)
	bob.waitFor("bob to get the backend's message", `log.user.some((m) => m.body === "from the backend" && m.from === "guest")`, realtimeDiag, 10*time.Second)
	if n := eval[int](alice, "alice's user messages", "log.user.length"); n != 0 {
		t.Fatalf("alice got %d messages meant for bob", n)
	}

	// WebRTC: offer, answer and ICE through Herald; then a data channel.
	eval[bool](bob, "bob accepts calls", `(h.onRtc((s) => {
		s.pc.ondatachannel = (e) => { e.channel.onmessage = (ev) => { log.rtc.push(ev.data); e.channel.send("pong: " + ev.data); }; };
		s.accept();
	}), true)`)
	eval[bool](alice, "alice calls bob", `(() => {
		const s = h.rtc("bob");
		window.call = s;
		const dc = s.pc.createDataChannel("chat");
		dc.onopen = () => dc.send("ping over rtc");
		dc.onmessage = (ev) => log.rtc.push(ev.data);
		return s.start().then(() => true);
	})()`)
	bob.waitFor("bob to get the data channel message", `log.rtc.includes("ping over rtc")`, realtimeDiag, 20*time.Second)
	alice.waitFor("alice to get bob's answer over the data channel", `log.rtc.includes("pong: ping over rtc")`, realtimeDiag, 10*time.Second)
	// The pair the peers use: host candidates (no STUN, no TURN).
	// The transport's selected pair; the stats may lag the open data
	// channel a moment, so look again for up to 5 s.
	pair := eval[string](alice, "candidate pair", `(async () => {
		for (let i = 0; i < 50; i++) {
			const r = await call.pc.getStats();
			let out = "";
			r.forEach((s) => {
				if (s.type !== "transport" || !s.selectedCandidatePairId) return;
				const p = r.get(s.selectedCandidatePairId);
				const l = p && r.get(p.localCandidateId), rm = p && r.get(p.remoteCandidateId);
				if (l && rm) out = l.candidateType + "/" + rm.candidateType;
			});
			if (!out) r.forEach((s) => { if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) {
				const l = r.get(s.localCandidateId), rm = r.get(s.remoteCandidateId);
				out = l.candidateType + "/" + rm.candidateType;
			} });
			if (out) return out;
			await new Promise((res) => setTimeout(res, 100));
		}
		return "";
	})()`)
	if pair != "host/host" {
		t.Fatalf("candidate pair %q, want host/host", pair)
	}

	// bob leaves: alice sees it.
	eval[bool](bob, "bob closes", "(h.close(), true)")
	alice.waitFor("alice to see bob leave", `log.leaves.includes("bob")`, realtimeDiag, 10*time.Second)
	h.api(t, "GET", "/api/presence/%2F/amq.topic%2Froom1/stats", "", &st)
	if st.Clients != 1 || st.Users != 1 {
		t.Fatalf("stats after bob left %+v", st)
	}
	if errs := eval[[]string](alice, "alice's errors", "log.errors"); len(errs) != 0 {
		t.Fatalf("alice's page errors: %v", errs)
	}
}

// mqttPage is a page on another origin that speaks MQTT 3.1.1 over
// Herald's /mqtt with a plain WebSocket (what mqtt.js does underneath):
// CONNECT as guest, then waits for CONNACK. It also tries /ws, which a
// page of an origin --cors-origins does not name may not open.
const mqttPage = `<!doctype html><html><body><script>
"use strict";
const herald = new URLSearchParams(location.search).get("herald");
window.result = { connack: null, mqttError: null, wsClosed: null };
function str(s) { const b = new TextEncoder().encode(s); return [b.length >> 8, b.length & 255, ...b]; }
const body = [...str("MQTT"), 4, 0xC2, 0, 60, ...str("web-page"), ...str("guest"), ...str("guest")];
const ws = new WebSocket("ws://" + herald + "/mqtt", "mqtt");
ws.binaryType = "arraybuffer";
ws.onopen = () => ws.send(new Uint8Array([0x10, body.length, ...body]));
ws.onmessage = (ev) => { result.connack = Array.from(new Uint8Array(ev.data)); };
ws.onerror = () => { result.mqttError = "error"; };
const other = new WebSocket("ws://" + herald + "/ws");
other.onclose = (ev) => { result.wsClosed = ev.code; };
</script></body></html>`

// TestBrowserMQTTFromAnotherOrigin: a page served from another port of the
// same host (a dev server) connects to /mqtt out of the box, as with
// RabbitMQ's Web MQTT plugin, while /ws refuses that origin.
func TestBrowserMQTTFromAnotherOrigin(t *testing.T) {
	pages := servePage(t, mqttPage)
	h := startHerald(t) // no --cors-origins
	b := startBrowser(t)
	b.do("open the page", chromedp.Navigate(pages.URL+"/?herald="+h.host))
	const diag = `JSON.stringify(window.result)`
	b.waitFor("CONNACK over /mqtt", `result.connack !== null && result.wsClosed !== null`, diag, 15*time.Second)
	got := eval[string](b, "result", diag)
	if got != `{"connack":[32,2,0,0],"mqttError":null,"wsClosed":1006}` {
		t.Fatalf("page result %s: want CONNACK accepted over /mqtt and /ws refused (1006)", got)
	}
}

// TestBrowserTokenRefreshAndExpiry: a page whose tokens live 3 s keeps its
// socket through several expiries by refreshing through getToken; a page
// whose token cannot be refreshed is closed at exp with "token expired".
func TestBrowserTokenRefreshAndExpiry(t *testing.T) {
	var mu sync.Mutex
	minted := 0
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			mu.Lock()
			minted++
			mu.Unlock()
			_, _ = io.WriteString(w, rtTokenFor(t, r.URL.Query().Get("user"), 3*time.Second))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, realtimePage)
	}))
	t.Cleanup(pages.Close)
	h := startHeraldWeb(t, web.Config{CORSOrigins: []string{pages.URL}, JWT: web.JWTConfig{HS256Secret: rtSecret}})
	b := startBrowser(t)
	b.do("open the refreshing page", chromedp.Navigate(pages.URL+"/?herald="+h.host+"&tokenfrom="+url.QueryEscape("/token?user=tim")))
	b.waitFor("herald.js to connect", "window.started === true", realtimeDiag, 15*time.Second)
	// The first token and three refreshes: past two expiries.
	b.waitFor("three refreshes", "tokenCalls >= 4", realtimeDiag, 15*time.Second)
	if got := eval[string](b, "the page", `JSON.stringify([h.state, log.closes, log.errors])`); got != `["connected",[],[]]` {
		t.Fatalf("[state, closes, errors] = %s: the socket must have lived through the refreshes", got)
	}
	// The page counts a refresh when it asks for a token; the server when
	// the fetch arrives, which may be a moment later.
	mintedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return minted
	}
	for deadline := time.Now().Add(5 * time.Second); mintedNow() < 4 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := mintedNow(); n < 4 {
		t.Errorf("%d tokens minted, want at least 4", n)
	}

	// A token nobody refreshes: closed at exp, with the reason.
	other := b.newTab()
	other.do("open the page with a 2 s token", chromedp.Navigate(pages.URL+"/?herald="+h.host+"&token="+url.QueryEscape(rtTokenFor(t, "una", 2*time.Second))))
	other.waitFor("herald.js to connect", "window.started === true", realtimeDiag, 15*time.Second)
	other.waitFor("the close at expiry", `log.closes.length > 0`, realtimeDiag, 10*time.Second)
	if c := eval[string](other, "close", "log.closes[0]"); c != "1008 token expired" {
		t.Fatalf("close %q", c)
	}
	eval[bool](other, "stop", "(h.close(), true)")
}
