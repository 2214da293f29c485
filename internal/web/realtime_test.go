package web_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/heraldmq/herald/internal/web"
)

// The JSON shapes of the presence answers (internal/protocol/httpapi).
type presenceClient struct {
	Client string          `json:"client"`
	User   string          `json:"user"`
	Info   json.RawMessage `json:"info,omitempty"`
}

type presenceStats struct {
	Clients int `json:"clients"`
	Users   int `json:"users"`
}

type channelSummary struct {
	VHost   string `json:"vhost"`
	Channel string `json:"channel"`
	presenceStats
}

// expectSkip reads frames until one with op, skipping others (a socket
// gets join/leave and $user frames interleaved with answers).
func (w *wsClient) expectSkip(op string, match func(map[string]any) bool) map[string]any {
	w.t.Helper()
	for {
		m := w.recv()
		if m["op"] == op && (match == nil || match(m)) {
			return m
		}
	}
}

func TestPresenceJoinLeaveQueryAndHTTP(t *testing.T) {
	f := newFixture(t, web.Config{})
	a := f.dialWS("")
	a.send(map[string]any{"op": "connect", "id": "c"})
	aID := a.expect("connected")["client"].(string)
	a.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "room1", "presence": true, "join_leave": true, "info": map[string]any{"name": "Ann"}})
	j := a.expect("join")
	if j["channel"] != "amq.topic/room1" || j["client"] != aID || j["user"] != "guest" || j["info"].(map[string]any)["name"] != "Ann" {
		t.Fatalf("own join %v", j)
	}
	b := f.dialWS("")
	b.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "room1", "presence": true})
	j = a.expect("join")
	bID := j["client"].(string)
	if bID == aID || j["user"] != "guest" {
		t.Fatalf("second join %v", j)
	}
	// Any socket that may read the channel may ask, subscribed or not.
	c := f.dialWS("")
	c.send(map[string]any{"op": "presence", "id": 1, "channel": "amq.topic/room1"})
	p := c.expect("presence")
	if cl := p["clients"].([]any); len(cl) != 2 || p["id"] != "1" {
		t.Fatalf("presence %v", p)
	}
	var got struct {
		Channel string           `json:"channel"`
		Clients []presenceClient `json:"clients"`
	}
	f.call("GET", "/api/presence/%2F/amq.topic%2Froom1", nil, http.StatusOK, &got)
	if got.Channel != "amq.topic/room1" || len(got.Clients) != 2 {
		t.Fatalf("GET presence %+v", got)
	}
	var st presenceStats
	f.call("GET", "/api/presence/%2F/amq.topic%2Froom1/stats", nil, http.StatusOK, &st)
	if st != (presenceStats{Clients: 2, Users: 1}) {
		t.Fatalf("stats %+v", st)
	}
	// Nobody in a channel: 200 and no clients.
	f.call("GET", "/api/presence/%2F/amq.topic%2Fempty/stats", nil, http.StatusOK, &st)
	if st != (presenceStats{}) {
		t.Fatalf("empty stats %+v", st)
	}
	var list []channelSummary
	f.call("GET", "/api/presence", nil, http.StatusOK, &list)
	if len(list) != 1 || list[0].Channel != "amq.topic/room1" || list[0].Clients != 2 {
		t.Fatalf("list %+v", list)
	}
	// A bad channel and a missing exchange's read permission are errors.
	c.send(map[string]any{"op": "presence", "channel": "nochannel"})
	if e := c.expect("error"); e["code"] != float64(400) {
		t.Fatalf("bad channel %v", e)
	}
	// Unsubscribe and close both leave.
	b.send(map[string]any{"op": "unsubscribe", "id": "s"})
	if l := a.expect("leave"); l["client"] != bID {
		t.Fatalf("leave %v", l)
	}
	_ = b.c.Close(websocket.StatusNormalClosure, "")
	b2 := f.dialWS("")
	b2.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "room1", "presence": true})
	b2ID := a.expect("join")["client"]
	_ = b2.c.CloseNow()
	if l := a.expect("leave"); l["client"] != b2ID {
		t.Fatalf("leave on close %v", l)
	}
	// presence on a queue subscription is refused.
	a.send(map[string]any{"op": "subscribe", "id": "q", "queue": "x", "presence": true})
	if e := a.expect("error"); !strings.Contains(e["message"].(string), "exchange subscription") {
		t.Fatalf("queue presence %v", e)
	}
}

func TestPresenceBounded(t *testing.T) {
	f := newFixture(t, web.Config{MaxPresence: 1})
	a := f.dialWS("")
	a.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "r", "presence": true})
	b := f.dialWS("")
	b.send(map[string]any{"op": "subscribe", "id": "s", "exchange": "amq.topic", "key": "r", "presence": true})
	e := b.expect("error")
	if e["code"] != float64(503) || !strings.Contains(e["message"].(string), "is full: 1 clients (--max-presence)") {
		t.Fatalf("full set %v", e)
	}
	// The refused subscription is not there: its id is free again, and a
	// plain one (no presence) works.
	b.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "r"})
}

func TestPresenceVanishedClientLeavesWithinHeartbeat(t *testing.T) {
	const beat = 500 * time.Millisecond
	f := newFixture(t, web.Config{WSHeartbeat: beat})
	a := f.dialWS("")
	a.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "r", "presence": true})
	// The client stops reading: it answers no ping any more, as a peer
	// whose network vanished.
	start := time.Now()
	var st presenceStats
	for {
		f.call("GET", "/api/presence/%2F/amq.topic%2Fr/stats", nil, http.StatusOK, &st)
		if st.Clients == 0 {
			break
		}
		if time.Since(start) > 10*beat {
			t.Fatalf("still present after %v", time.Since(start))
		}
		time.Sleep(beat / 10)
	}
	// Within one interval (plus slack for the polling and a busy machine).
	if d := time.Since(start); d > 4*beat {
		t.Fatalf("left after %v, heartbeat %v", d, beat)
	}
}

func TestUserMessages(t *testing.T) {
	f := newFixture(t, web.Config{})
	a, b := f.dialWS(""), f.dialWS("")
	// A socket gets its user's messages once it runs: "connected" says so.
	for _, c := range []*wsClient{a, b} {
		c.send(map[string]any{"op": "connect"})
		c.expect("connected")
	}
	// Two sockets of guest get what is sent to guest, from HTTP, from a
	// socket and from a plain publish to amq.herald.user (AMQP's way).
	f.call("POST", "/api/users/%2F/guest/messages", map[string]any{"payload": "hi", "properties": map[string]any{"correlation_id": "k"}}, http.StatusOK, nil)
	for _, c := range []*wsClient{a, b} {
		m := c.expectSkip("message", nil)
		p := m["properties"].(map[string]any)
		if m["sub"] != "$user" || m["body"] != "hi" || p["correlation_id"] != "k" || p["user_id"] != "guest" {
			t.Fatalf("user message %v", m)
		}
	}
	a.send(map[string]any{"op": "send", "to": "guest", "body": "from a", "confirm": true, "id": 3, "headers": map[string]any{"h": "v"}})
	conf := a.expectSkip("confirmed", nil)
	if _, ok := conf["routed"]; ok || conf["id"] != "3" {
		t.Fatalf("confirm %v (must not say whether anyone got it)", conf)
	}
	if m := b.expectSkip("message", nil); m["body"] != "from a" || m["headers"].(map[string]any)["h"] != "v" {
		t.Fatalf("sent %v", m)
	}
	f.publish("amq.herald.user", "guest", "from amqp")
	if m := b.expectSkip("message", func(m map[string]any) bool { return m["body"] == "from amqp" }); m["sub"] != "$user" {
		t.Fatal(m)
	}
	// Nobody is user "ghost": the same answers as for someone.
	a.send(map[string]any{"op": "send", "to": "ghost", "body": "x", "confirm": true, "id": 4})
	if c := a.expectSkip("confirmed", nil); c["id"] != "4" {
		t.Fatal(c)
	}
	var sent map[string]bool
	f.call("POST", "/api/users/%2F/ghost/messages", map[string]any{"payload": "x"}, http.StatusOK, &sent)
	if !sent["sent"] {
		t.Fatal(sent)
	}
	// user_id must not be forged; bad frames are errors.
	a.send(map[string]any{"op": "send", "to": "guest", "body": "x", "properties": map[string]any{"user_id": "root"}, "id": 5})
	if e := a.expectSkip("error", nil); e["code"] != float64(400) {
		t.Fatal(e)
	}
	a.send(map[string]any{"op": "send", "body": "x"})
	if e := a.expectSkip("error", nil); !strings.Contains(e["message"].(string), "send needs to") {
		t.Fatal(e)
	}
}

func TestUserMessagesPermission(t *testing.T) {
	f := jwtFixture(t, web.JWTConfig{HS256Secret: testSecret})
	tok := hs256(t, claims("app", `herald.write:%2F/^amq\.herald\.user\.bob$`))
	st, m := f.doBearer(tok, "POST", "/api/users/%2F/bob/messages", map[string]any{"payload": "x"})
	if st != http.StatusOK {
		t.Fatal(st, m)
	}
	st, m = f.doBearer(tok, "POST", "/api/users/%2F/carol/messages", map[string]any{"payload": "x"})
	if st != http.StatusForbidden || !strings.Contains(m["reason"].(string), "amq.herald.user.carol") {
		t.Fatal(st, m)
	}
}

// dialAnon opens /ws without credentials (the in-band login).
func (f *fixture) dialAnon() *wsClient {
	f.t.Helper()
	ctx := testCtx(f.t)
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.hs.URL, "http")+"/ws", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = c.CloseNow() })
	return &wsClient{t: f.t, c: c, ctx: ctx}
}

// closeStatus reads until the socket closes and returns the close frame.
func (w *wsClient) closeStatus() websocket.CloseError {
	w.t.Helper()
	for {
		var m map[string]any
		err := wsjson.Read(w.ctx, w.c, &m)
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce
		}
		if err != nil {
			w.t.Fatalf("socket ended without a close frame: %v", err)
		}
	}
}

func TestWSConnectTokenRefreshAndExpiry(t *testing.T) {
	f := jwtFixture(t, web.JWTConfig{HS256Secret: testSecret})
	short := func(user string, d time.Duration) string {
		c := claims(user, fullScope)
		c["exp"] = time.Now().Add(d).Unix()
		c["info"] = map[string]any{"name": user + "!"}
		return hs256(t, c)
	}
	// Logged in in-band, then refreshed: the socket outlives the first exp.
	a := f.dialAnon()
	a.send(map[string]any{"op": "connect", "id": 1, "token": short("ann", 4*time.Second)})
	c := a.expect("connected")
	if c["user"] != "ann" || c["id"] != "1" || c["client"] == "" || c["expires"] == nil {
		t.Fatalf("connected %v", c)
	}
	a.subscribe(map[string]any{"id": "s", "exchange": "amq.topic", "key": "r", "presence": true, "join_leave": true})
	if j := a.expect("join"); j["info"].(map[string]any)["name"] != "ann!" {
		t.Fatalf("the token's info claim is the presence info: %v", j)
	}
	a.send(map[string]any{"op": "refresh", "id": 2, "token": short("bob", time.Hour)})
	if e := a.expect("error"); e["code"] != float64(403) {
		t.Fatalf("another user's token %v", e)
	}
	a.send(map[string]any{"op": "refresh", "id": 3, "token": short("ann", time.Hour)})
	if r := a.expect("refreshed"); r["id"] != "3" {
		t.Fatal(r)
	}
	// Not refreshed: closed at exp with a clear reason.
	b := f.dialAnon()
	b.send(map[string]any{"op": "connect", "token": short("bea", 1*time.Second)})
	b.expect("connected")
	if ce := b.closeStatus(); ce.Code != websocket.StatusPolicyViolation || ce.Reason != "token expired" {
		t.Fatalf("close %v", ce)
	}
	// a is still open (its token was refreshed).
	a.send(map[string]any{"op": "ping", "id": "p"})
	a.expect("pong")
	// A bad first frame or token: closed with the reason.
	for frame, want := range map[string]string{
		`{"op":"ping"}`:                    "the first frame must be",
		`{"op":"connect","token":"x.y.z"}`: "token malformed",
		`nope`:                             "invalid JSON frame",
	} {
		c := f.dialAnon()
		if err := c.c.Write(c.ctx, websocket.MessageText, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		if ce := c.closeStatus(); ce.Code != websocket.StatusPolicyViolation || !strings.Contains(ce.Reason, want) {
			t.Fatalf("%s: close %v", frame, ce)
		}
	}
	// Without bearer tokens enabled, no credentials is still 401.
	g := newFixture(t, web.Config{})
	_, resp, err := websocket.Dial(testCtx(t), "ws"+strings.TrimPrefix(g.hs.URL, "http")+"/ws", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous upgrade without JWT: %v %v", err, resp)
	}
}

func TestWSFramePacing(t *testing.T) {
	f := newFixture(t, web.Config{MaxFrameRate: 20})
	c := f.dialWS("")
	start := time.Now()
	const n = 50
	for i := range n {
		c.send(map[string]any{"op": "ping", "id": i})
	}
	for range n {
		c.expect("pong")
	}
	// A burst of 20, then 30 at 20 a second: at least 1.5 s.
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Fatalf("%d pings answered in %v: not paced at 20/s", n, d)
	}
	// Malformed frames are paced too, and answered, and the socket stays.
	if err := c.c.Write(c.ctx, websocket.MessageText, []byte("{")); err != nil {
		t.Fatal(err)
	}
	if e := c.recv(); e["op"] != "error" || !strings.Contains(e["message"].(string), "invalid JSON") {
		t.Fatal(e)
	}
}

func TestWebSocketOrigins(t *testing.T) {
	// The adapters' handlers accept with coder/websocket's default origin
	// check (same host only), as internal/protocol/mqtt does.
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_ = c.Close(websocket.StatusNormalClosure, "")
	})
	dial := func(f *fixture, path, origin string) int {
		h := http.Header{"Origin": {origin}}
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth("guest", "guest")
		h.Set("Authorization", req.Header.Get("Authorization"))
		c, resp, err := websocket.Dial(testCtx(t), "ws"+strings.TrimPrefix(f.hs.URL, "http")+path, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			_ = c.CloseNow()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	f := newFixture(t, web.Config{MQTTWebSocket: echo, STOMPWebSocket: echo, CORSOrigins: []string{"http://app.test"}})
	for _, tc := range []struct {
		path, origin string
		want         int
	}{
		{"/mqtt", "http://127.0.0.1:1", http.StatusSwitchingProtocols}, // any origin
		{"/stomp", "http://evil.test", http.StatusSwitchingProtocols},
		{"/ws", "http://evil.test", http.StatusForbidden},
		{"/ws", "http://app.test", http.StatusSwitchingProtocols},
	} {
		if got := dial(f, tc.path, tc.origin); got != tc.want {
			t.Errorf("%s from %s: %d, want %d", tc.path, tc.origin, got, tc.want)
		}
	}
	st, _, _ := f.doAs("guest", "guest", "GET", "/sse?exchange=amq.topic&key=x", nil, http.Header{"Origin": {"http://evil.test"}})
	if st != http.StatusForbidden {
		t.Errorf("/sse from a foreign origin: %d", st)
	}
	// Restricted by WebSocketOrigins.
	g := newFixture(t, web.Config{MQTTWebSocket: echo, WebSocketOrigins: []string{"http://app.test"}})
	if got := dial(g, "/mqtt", "http://evil.test"); got != http.StatusForbidden {
		t.Errorf("/mqtt restricted: %d", got)
	}
	if got := dial(g, "/mqtt", "http://app.test"); got != http.StatusSwitchingProtocols {
		t.Errorf("/mqtt allowed origin: %d", got)
	}
}
