package web_test

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// claims returns valid claims for user with scope; edit adjusts them.
func claims(user string, scope any) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"sub": user, "scope": scope, "aud": []string{"herald", "other"}, "iss": "https://idp.test",
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func hs256(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const fullScope = "herald.configure:%2F/.* herald.write:%2F/.* herald.read:%2F/.*"

func jwtFixture(t *testing.T, jc web.JWTConfig) *fixture {
	t.Helper()
	if jc.Audience == "" {
		jc.Audience = "herald"
	}
	if jc.Issuer == "" {
		jc.Issuer = "https://idp.test"
	}
	return newFixture(t, web.Config{JWT: jc})
}

// doBearer sends a request with an Authorization: Bearer header.
func (f *fixture) doBearer(token, method, path string, body any) (int, map[string]any) {
	f.t.Helper()
	st, out, hdr := f.doAs("", "", method, path, body, http.Header{"Authorization": {"Bearer " + token}})
	var m map[string]any
	if len(out) > 0 && out[0] == '{' {
		if err := json.Unmarshal(out, &m); err != nil {
			f.t.Fatalf("%s: %v", out, err)
		}
	}
	if st == http.StatusUnauthorized && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		f.t.Fatalf("401 without a Bearer challenge: %v", hdr)
	}
	return st, m
}

func TestJWTHS256PublishAndPermissions(t *testing.T) {
	f := jwtFixture(t, web.JWTConfig{HS256Secret: testSecret})
	q := f.declareQueue("jq")
	// "bob" is not a Herald user: the token alone logs him in.
	tok := hs256(t, claims("bob", fullScope+" herald.tag:management openid"))
	st, m := f.doBearer(tok, "POST", "/api/exchanges/%2F/amq.default/publish",
		map[string]any{"routing_key": "jq", "payload": "hi", "payload_encoding": "string", "properties": map[string]any{}})
	if st != http.StatusOK || m["routed"] != true {
		t.Fatalf("publish: %d %v", st, m)
	}
	if n := q.Stats().Ready; n != 1 {
		t.Fatalf("queue holds %d", n)
	}
	st, m = f.doBearer(tok, "GET", "/api/whoami", nil)
	if st != http.StatusOK || m["name"] != "bob" {
		t.Fatalf("whoami: %d %v", st, m)
	}
	// Without herald.tag:administrator the token cannot manage users.
	if st, _ := f.doBearer(tok, "GET", "/api/users", nil); st != http.StatusForbidden {
		t.Fatalf("users without administrator tag: %d", st)
	}
	// The token's permissions replace the database's: guest has all in
	// the database, a guest token with read only cannot publish.
	ro := hs256(t, claims("guest", []any{"herald.read:%2F/.*"}))
	st, m = f.doBearer(ro, "POST", "/v1/publish/amq.topic/a.b", "x")
	if st != http.StatusForbidden || m["error"] != "access_refused" || !strings.Contains(m["reason"].(string), "write access to exchange 'amq.topic'") {
		t.Fatalf("publish without write: %d %v", st, m)
	}
	// No scope for the vhost at all: 403 on the vhost.
	other := hs256(t, claims("bob", "herald.read:other/.*"))
	if st, m := f.doBearer(other, "POST", "/v1/publish/amq.topic/a.b", "x"); st != http.StatusForbidden || !strings.Contains(m["reason"].(string), "access to vhost '/'") {
		t.Fatalf("publish without vhost: %d %v", st, m)
	}
	// Basic logins still work next to tokens.
	if st, _, _ := f.doAs("alice", "secret", "GET", "/api/whoami", nil, nil); st != http.StatusOK {
		t.Fatalf("basic login: %d", st)
	}
}

func TestJWTRS256(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	file := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(file, pubPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	f := jwtFixture(t, web.JWTConfig{RS256PublicKeyFile: file, UserClaim: "preferred_username"})
	c := claims("", "herald.tag:administrator")
	c["preferred_username"] = "carol"
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	if st, m := f.doBearer(tok, "GET", "/api/users", nil); st != http.StatusOK {
		t.Fatalf("rs256 admin: %d %v", st, m)
	}
	// Algorithm confusion: HS256 signed with the public key as secret.
	conf, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(pubPEM)
	if st, m := f.doBearer(conf, "GET", "/api/users", nil); st != http.StatusUnauthorized || !strings.Contains(m["reason"].(string), `algorithm "HS256" not accepted`) {
		t.Fatalf("hs256 with public key: %d %v", st, m)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodRS256, c).SignedString(other)
	if st, m := f.doBearer(forged, "GET", "/api/users", nil); st != http.StatusUnauthorized || m["reason"] != "token signature invalid" {
		t.Fatalf("rs256 other key: %d %v", st, m)
	}

	// A bad key file refuses every token (and Validate says why).
	bad := filepath.Join(t.TempDir(), "bad.pem")
	_ = os.WriteFile(bad, []byte("not pem"), 0o600)
	if err := (web.JWTConfig{RS256PublicKeyFile: bad}).Validate(); err == nil {
		t.Fatal("Validate accepted a bad key file")
	}
	fb := jwtFixture(t, web.JWTConfig{RS256PublicKeyFile: bad})
	if st, m := fb.doBearer(tok, "GET", "/api/users", nil); st != http.StatusUnauthorized || !strings.Contains(m["reason"].(string), "RS256 public key") {
		t.Fatalf("bad key file: %d %v", st, m)
	}
}

func TestJWTRefusals(t *testing.T) {
	// The secret from a file, as herald serve --jwt-hs256-secret-file.
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, append(slices.Clone(testSecret), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	f := jwtFixture(t, web.JWTConfig{HS256SecretFile: secretFile})
	sign := func(m jwt.SigningMethod, key any, edit func(jwt.MapClaims)) string {
		c := claims("bob", fullScope)
		if edit != nil {
			edit(c)
		}
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hs := jwt.SigningMethodHS256
	cases := []struct{ name, token, reason string }{
		{"expired", sign(hs, testSecret, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "token expired"},
		{"not yet valid", sign(hs, testSecret, func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() }), "token not valid yet"},
		{"issued in the future", sign(hs, testSecret, func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() }), "token not valid yet"},
		{"no exp", sign(hs, testSecret, func(c jwt.MapClaims) { delete(c, "exp") }), "missing a required claim: exp claim is required"},
		{"wrong signature", sign(hs, []byte("another secret, just as long....."), nil), "token signature invalid"},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil), `token algorithm "none" not accepted`},
		{"alg HS384", sign(jwt.SigningMethodHS384, testSecret, nil), `token algorithm "HS384" not accepted`},
		{"wrong audience", sign(hs, testSecret, func(c jwt.MapClaims) { c["aud"] = "someone-else" }), "token audience not accepted"},
		{"no audience", sign(hs, testSecret, func(c jwt.MapClaims) { delete(c, "aud") }), "aud claim is required"},
		{"wrong issuer", sign(hs, testSecret, func(c jwt.MapClaims) { c["iss"] = "https://evil.test" }), "token issuer not accepted"},
		{"no user", sign(hs, testSecret, func(c jwt.MapClaims) { delete(c, "sub") }), `token has no string claim "sub"`},
		{"bad scope regexp", sign(hs, testSecret, func(c jwt.MapClaims) { c["scope"] = "herald.read:%2F/(" }), "bad pattern"},
		{"bad scope type", sign(hs, testSecret, func(c jwt.MapClaims) { c["scope"] = 42 }), "neither a string nor an array"},
		{"malformed", "abc.def", "token malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, m := f.doBearer(tc.token, "GET", "/v1/fetch/q?timeout=0s", nil)
			if st != http.StatusUnauthorized || m["error"] != "not_authorized" || !strings.Contains(m["reason"].(string), tc.reason) {
				t.Fatalf("got %d %v, want 401 with reason %q", st, m, tc.reason)
			}
		})
	}
	// Tokens when none are configured.
	plain := newFixture(t, web.Config{})
	if st, m := plain.doBearer(hs256(t, claims("bob", fullScope)), "GET", "/api/whoami", nil); st != http.StatusUnauthorized || !strings.Contains(m["reason"].(string), "not enabled") {
		t.Fatalf("bearer without JWT config: %d %v", st, m)
	}
	// access_token is only read where browsers cannot send headers.
	tok := hs256(t, claims("bob", fullScope+" herald.tag:management"))
	if st, _, _ := f.doAs("", "", "GET", "/api/whoami?access_token="+tok, nil, nil); st != http.StatusUnauthorized {
		t.Fatalf("access_token on /api: %d", st)
	}
}

// A browser cannot set headers on WebSocket or EventSource: the token
// rides in ?access_token=.
func TestJWTAccessTokenWebSocketSSEFetch(t *testing.T) {
	f := jwtFixture(t, web.JWTConfig{HS256Secret: testSecret})
	// Subscribe to amq.topic: read on the exchange, all on the private
	// amq.gen- queue; no write on amq.topic.
	scope := "herald.read:%2F/^(amq\\.(topic|gen-.*)|fetchq)$ herald.configure:%2F/^amq\\.gen- herald.write:%2F/^amq\\.gen-"
	tok := hs256(t, claims("dave", scope))
	ctx := testCtx(t)
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.hs.URL, "http")+"/ws?vhost=%2F&access_token="+url.QueryEscape(tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ws := &wsClient{t: t, c: c, ctx: ctx}
	ws.subscribe(map[string]any{"id": "s1", "exchange": "amq.topic", "key": "ticks"})
	f.publish("amq.topic", "ticks", "tick-1")
	if m := ws.expect("message"); m["body"] != "tick-1" {
		t.Fatalf("message %v", m)
	}
	// Publishing needs write on amq.topic, which the token lacks.
	ws.send(map[string]any{"op": "publish", "exchange": "amq.topic", "key": "ticks", "body": "x", "confirm": true, "id": 7})
	if m := ws.expect("error"); m["code"] != float64(403) {
		t.Fatalf("publish without write: %v", m)
	}

	// A bad token refuses the upgrade with 401.
	_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(f.hs.URL, "http")+"/ws?access_token=x.y.z", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token upgrade: %v %v", err, resp)
	}

	// SSE with the same token.
	req, _ := http.NewRequestWithContext(ctx, "GET", f.hs.URL+"/sse?exchange=amq.topic&key=ticks&access_token="+url.QueryEscape(tok), nil)
	resp, err = f.hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: %d", resp.StatusCode)
	}
	sse := &sseStream{t: t, resp: resp, rd: bufio.NewReader(resp.Body)}
	// The headers are written after the bind, so publishing now reaches it.
	f.publish("amq.topic", "ticks", "tick-sse")
	if ev := sse.nextEvent(); ev["event"] != "message" || !strings.Contains(ev["data"], "tick-sse") {
		t.Fatalf("sse event %v", ev)
	}

	// /v1/fetch with the token: read on the queue is needed.
	if _, err := f.b.VHost("/").DeclareQueue("fetchq", broker.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	f.publish("", "fetchq", "fetched")
	st, out, _ := f.doAs("", "", "GET", "/v1/fetch/fetchq?timeout=0s&access_token="+url.QueryEscape(tok), nil, nil)
	if st != http.StatusOK || !strings.Contains(string(out), "fetched") {
		t.Fatalf("fetch: %d %s", st, out)
	}
	f.declareQueue("private")
	st, _, _ = f.doAs("", "", "GET", "/v1/fetch/private?timeout=0s&access_token="+url.QueryEscape(tok), nil, nil)
	if st != http.StatusForbidden {
		t.Fatalf("fetch without read: %d", st)
	}
}
