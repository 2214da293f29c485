package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	"github.com/golang-jwt/jwt/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/auth"
)

// OAuth 2.0 / JWT on every protocol: the token is the password (any user
// name), verified with the HTTP bearer tokens' keys; its scopes are the
// permissions; the connection ends when it expires.

var jwtSecret = []byte("0123456789abcdef0123456789abcdef")

const allScopes = "herald.configure:%2F/.* herald.write:%2F/.* herald.read:%2F/.*"

func withJWT() serverOption {
	return func(c *app.Config) {
		c.Web.JWT = auth.JWTConfig{HS256Secret: jwtSecret, Audience: "herald"}
	}
}

// token signs a token for user with scope, valid for ttl; edit adjusts
// the claims.
func token(t *testing.T, user, scope string, ttl time.Duration, edit ...func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"sub": user, "scope": scope, "aud": "herald", "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for _, e := range edit {
		e(c)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(jwtSecret)
	must(t, err)
	return s
}

func otherAudience(c jwt.MapClaims) { c["aud"] = "someone-else" }

func TestJWTAMQP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT())
	url := func(tok string) string { return "amqp://ignored:" + tok + "@" + s.AMQPAddr().String() + "/" }

	// Full scopes on "/": declare, publish, consume.
	c, err := amqp.Dial(url(token(t, "svc", allScopes, time.Hour)))
	must(t, err)
	defer c.Close()
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("hi"), UserId: "svc"}) // user_id must be the token's user
	if d := recv(t, mustConsume(t, ch, q, "", true)); string(d.Body) != "hi" {
		t.Fatalf("got %q", d.Body)
	}

	// Read-only scopes: publishing is 403, as for a database user.
	ro, err := amqp.Dial(url(token(t, "reader", "herald.read:%2F/.*", time.Hour)))
	must(t, err)
	defer ro.Close()
	rch := mustChannel(t, ro)
	closed := rch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, rch, "amq.topic", "x", amqp.Publishing{Body: []byte("x")})
	if e := waitClose(t, closed); e.Code != amqp.AccessRefused || !strings.Contains(e.Reason, "write access to exchange 'amq.topic' in vhost '/' refused for user 'reader'") {
		t.Fatalf("read-only publish: %d %q", e.Code, e.Reason)
	}
	// No scope for the vhost: 530 at connection.open.
	_, err = amqp.Dial(url(token(t, "elsewhere", "herald.read:other/.*", time.Hour)))
	expectCode(t, err, amqp.NotAllowed)

	// Another audience, garbage: refused as a bad password (403).
	_, err = amqp.Dial(url(token(t, "svc", allScopes, time.Hour, otherAudience)))
	expectCode(t, err, amqp.AccessRefused)
	_, err = amqp.Dial(url("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"))
	expectCode(t, err, amqp.AccessRefused)
}

// A token that expires closes the connection with 320 CONNECTION_FORCED
// "credential expired", as RabbitMQ; connection.update-secret with a
// fresh token keeps it open; a token for another user is refused (530).
func TestJWTAMQPExpiryAndUpdateSecret(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT())
	url := func(tok string) string { return "amqp://x:" + tok + "@" + s.AMQPAddr().String() + "/" }

	short, err := amqp.Dial(url(token(t, "svc", allScopes, 2*time.Second)))
	must(t, err)
	defer short.Close()
	gone := short.NotifyClose(make(chan *amqp.Error, 1))

	renewed, err := amqp.Dial(url(token(t, "svc", allScopes, 2*time.Second)))
	must(t, err)
	defer renewed.Close()
	must(t, renewed.UpdateSecret(token(t, "svc", allScopes, time.Hour), "refresh"))

	select {
	case e := <-gone:
		if e == nil || e.Code != amqp.ConnectionForced || !strings.Contains(e.Reason, "credential expired") {
			t.Fatalf("expired connection closed with %v", e)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the connection outlived its token")
	}
	assertAlive(t, renewed) // past the first token's expiry

	other, err := amqp.Dial(url(token(t, "svc", allScopes, time.Hour)))
	must(t, err)
	defer other.Close()
	closed := other.NotifyClose(make(chan *amqp.Error, 1))
	if err := other.UpdateSecret(token(t, "mallory", allScopes, time.Hour), "swap"); err == nil {
		t.Fatal("a token for another user was accepted")
	}
	if e := waitClose(t, closed); e.Code != amqp.NotAllowed {
		t.Fatalf("update-secret with another user's token: %d %q", e.Code, e.Reason)
	}
}

func TestJWTMQTT(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT(), withAllProtocols())
	addr := s.MQTTAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	v5 := func(pw string, onDisconnect func(*paho.Disconnect)) (*paho.Client, *paho.Connack, error) {
		nc, err := net.Dial("tcp", addr)
		must(t, err)
		c := paho.NewClient(paho.ClientConfig{Conn: nc, OnServerDisconnect: onDisconnect})
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: "j5-" + pw[len(pw)-6:], CleanStart: true, Username: "anyone", UsernameFlag: true,
			Password: []byte(pw), PasswordFlag: true, KeepAlive: 30})
		t.Cleanup(func() {
			_ = c.Disconnect(&paho.Disconnect{})
			nc.Close()
			<-c.Done()
		})
		return c, ca, err
	}
	c, _, err := v5(token(t, "dev", allScopes, time.Hour), nil)
	must(t, err)
	pr, err := c.Publish(ctx, &paho.Publish{Topic: "a/b", QoS: 1, Payload: []byte("x")})
	if err != nil || pr.ReasonCode != 0x10 { // no matching subscribers: accepted
		t.Fatalf("publish: %+v %v", pr, err)
	}
	if _, ca, _ := v5(token(t, "dev", allScopes, time.Hour, otherAudience), nil); ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("v5 other audience: %+v", ca)
	}
	// 3.1.1: CONNACK 0x05, as for a bad password.
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("j3").SetUsername("x").
		SetPassword(token(t, "dev", allScopes, time.Hour, otherAudience)).SetAutoReconnect(false).SetConnectRetry(false)
	c3 := mqtt.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() == nil || !strings.Contains(tok.Error().Error(), "not Authorized") {
		t.Fatalf("v3 other audience: %v", tok.Error())
	}

	// Expiry: v5 DISCONNECT 0xA0 (maximum connect time), as RabbitMQ.
	disc := make(chan *paho.Disconnect, 1)
	_, _, err = v5(token(t, "dev", allScopes, 2*time.Second), func(d *paho.Disconnect) { disc <- d })
	must(t, err)
	select {
	case d := <-disc:
		if d.ReasonCode != 0xA0 {
			t.Fatalf("disconnect reason %#x", d.ReasonCode)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no DISCONNECT when the token expired")
	}
}

func TestJWTSTOMPAndWebSocket(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT(), withAllProtocols())
	dial := func(tok string) (*stomp.Conn, error) {
		return stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("whoever", tok), stomp.ConnOpt.Host("/"))
	}
	c, err := dial(token(t, "dev", allScopes, time.Hour))
	must(t, err)
	must(t, c.Send("/queue/jq", "text/plain", []byte("x"), stomp.SendOpt.Receipt))
	must(t, c.Disconnect())
	if _, err := dial(token(t, "dev", allScopes, time.Hour, otherAudience)); err == nil {
		t.Fatal("STOMP accepted a token for another audience")
	}
	// Expiry: an ERROR frame, then the connection closes.
	c, err = dial(token(t, "dev", allScopes, 2*time.Second))
	must(t, err)
	sub, err := c.Subscribe("/queue/jq2", stomp.AckAuto)
	must(t, err)
	select {
	case m := <-sub.C:
		if m == nil || m.Err == nil || !strings.Contains(m.Err.Error(), "credential expired") {
			t.Fatalf("expiry: %v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no ERROR when the token expired")
	}

	// /ws with the token as the basic-auth password.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	basic := func(tok string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("anyone:"+tok))}}
	}
	ws, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/ws", &websocket.DialOptions{HTTPHeader: basic(token(t, "dev", allScopes, 2*time.Second))})
	must(t, err)
	defer ws.CloseNow()
	must(t, wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s", "exchange": "amq.topic", "key": "a.#"}))
	var m map[string]any
	if must(t, wsjson.Read(ctx, ws, &m)); m["op"] != "subscribed" {
		t.Fatalf("ws subscribe: %v", m)
	}
	// The socket is closed when the token expires (1008 "token expired").
	err = wsjson.Read(ctx, ws, &m)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("ws after expiry: %v", err)
	}
	if _, resp, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/ws", &websocket.DialOptions{HTTPHeader: basic(token(t, "dev", allScopes, time.Hour, otherAudience))}); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("ws with another audience's token: %v", err)
	}
}

// An SSE stream opened with a bearer token ends when the token expires.
func TestJWTSSEExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT(), withAllProtocols())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+s.HTTPAddr().String()+"/sse?exchange=amq.topic&key=a.%23", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+token(t, "dev", allScopes, 2*time.Second))
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sse: %d", resp.StatusCode)
	}
	body, err := io.ReadAll(resp.Body) // returns when the server ends the stream
	if err != nil || !strings.HasSuffix(string(body), ": token expired\n\n") {
		t.Fatalf("sse ended with %q %v", body, err)
	}
}

// logLines is a log/slog destination tests can read while the server
// writes to it.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), substr)
}

// A token for another audience is refused with each protocol's auth
// error and logged once, with the reason, per attempt (not again by the
// connection's end).
func TestJWTRefusalLoggedOnce(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	// Registered before startServer, so it runs after the shutdown, when
	// every connection goroutine has returned.
	t.Cleanup(func() {
		if n := logs.count("token audience not accepted"); n != 3 || logs.count("handshake failed") != 0 {
			t.Errorf("the refusals were logged %d times, want 3 (one per protocol):\n%s", n, logs.buf.String())
		}
	})
	s := startServer(t, withJWT(), withAllProtocols(), func(c *app.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	bad := token(t, "dev", allScopes, time.Hour, otherAudience)
	_, err := amqp.Dial("amqp://x:" + bad + "@" + s.AMQPAddr().String() + "/")
	expectCode(t, err, amqp.AccessRefused)

	nc, err := net.Dial("tcp", s.MQTTAddr().String())
	must(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, _ := c.Connect(ctx, &paho.Connect{ClientID: "bad", CleanStart: true, Username: "x", UsernameFlag: true, Password: []byte(bad), PasswordFlag: true})
	if ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("mqtt: %+v", ca)
	}
	nc.Close()
	<-c.Done()

	if _, err := stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("x", bad)); err == nil {
		t.Fatal("stomp accepted the token")
	}
	eventually(t, "the three refusals in the log", func() bool { return logs.count("token audience not accepted") >= 3 })
}

// update-secret with a token that no longer reads a consumer's queue
// cancels that consumer (basic.cancel), as RabbitMQ; the others stay.
func TestJWTAMQPUpdateSecretRechecksConsumers(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT())
	admin := mustChannel(t, s.dial(t))
	for _, q := range []string{"keep", "lose"} {
		_, err := admin.QueueDeclare(q, false, false, false, false, nil)
		must(t, err)
	}
	c, err := amqp.Dial("amqp://x:" + token(t, "svc", "herald.read:%2F/^(keep|lose)$", time.Hour) + "@" + s.AMQPAddr().String() + "/")
	must(t, err)
	defer c.Close()
	ch := mustChannel(t, c)
	cancels := ch.NotifyCancel(make(chan string, 2))
	keep := mustConsume(t, ch, "keep", "k", true)
	mustConsume(t, ch, "lose", "l", true)
	must(t, c.UpdateSecret(token(t, "svc", "herald.read:%2F/^keep$", time.Hour), "narrower"))
	select {
	case tag := <-cancels:
		if tag != "l" {
			t.Fatalf("cancelled %q", tag)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no basic.cancel for the consumer the new token does not allow")
	}
	mustPublish(t, admin, "", "keep", amqp.Publishing{Body: []byte("still")})
	if d := recv(t, keep); string(d.Body) != "still" {
		t.Fatalf("got %q", d.Body)
	}
}

// MQTT and STOMP over WebSocket take the token as the password too.
func TestJWTOverWebSocket(t *testing.T) {
	t.Parallel()
	s := startServer(t, withJWT(), withAllProtocols())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	good, bad := token(t, "dev", allScopes, time.Hour), token(t, "dev", allScopes, time.Hour, otherAudience)

	stompWS := func(tok string) string {
		ws, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/stomp", &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
		must(t, err)
		defer ws.CloseNow()
		must(t, ws.Write(ctx, websocket.MessageText, []byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:x\npasscode:"+tok+"\n\n\x00")))
		_, data, err := ws.Read(ctx)
		must(t, err)
		return string(data)
	}
	if f := stompWS(good); !strings.HasPrefix(f, "CONNECTED\n") {
		t.Fatalf("stomp over websocket: %q", f)
	}
	if f := stompWS(bad); !strings.HasPrefix(f, "ERROR\n") {
		t.Fatalf("stomp over websocket, other audience: %q", f)
	}

	mqttWS := func(tok string) *paho.Connack {
		ws, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/mqtt", &websocket.DialOptions{Subprotocols: []string{"mqtt"}})
		must(t, err)
		nc := websocket.NetConn(ctx, ws, websocket.MessageBinary)
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		ca, _ := c.Connect(ctx, &paho.Connect{ClientID: "ws-" + tok[len(tok)-6:], CleanStart: true, Username: "x", UsernameFlag: true, Password: []byte(tok), PasswordFlag: true})
		_ = c.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-c.Done()
		return ca
	}
	if ca := mqttWS(good); ca == nil || ca.ReasonCode != 0 {
		t.Fatalf("mqtt over websocket: %+v", ca)
	}
	if ca := mqttWS(bad); ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("mqtt over websocket, other audience: %+v", ca)
	}
}
