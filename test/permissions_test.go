package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/auth"
)

// permUsers: guest (everything on "/"); "limited", who may declare and
// consume its own queues but not write to any exchange nor read the
// queue "secret"; "outsider", who has no permissions in "/" at all.
func permUsers(t *testing.T) *auth.Users {
	t.Helper()
	u := auth.NewDefaultUsers()
	u.PutUser("limited", "pw", nil)
	u.PutUser("outsider", "pw", nil)
	must(t, u.SetPermissions("limited", "/", auth.Permissions{
		Configure: ".*",
		Write:     `^(amq\.gen-.*|mqtt-subscription-.*)$`,
		Read:      `^(amq\.gen-.*|mqtt-subscription-.*|amq\.topic)$`,
	}))
	return u
}

func amqpURL(s *testServer, user string) string {
	return fmt.Sprintf("amqp://%s:pw@%s/", user, s.AMQPAddr())
}

func TestPermissionsAMQP(t *testing.T) {
	t.Parallel()
	users := permUsers(t)
	s := startServer(t, withUsers(users))
	admin := mustChannel(t, s.dial(t))
	_, err := admin.QueueDeclare("secret", false, false, false, false, nil)
	must(t, err)

	// No permissions in the vhost: 530 at connection.open.
	_, err = amqp.Dial(amqpURL(s, "outsider"))
	e := expectCode(t, err, amqp.NotAllowed)
	if !strings.Contains(e.Reason, "access to vhost '/' refused for user 'outsider'") {
		t.Fatalf("reason %q", e.Reason)
	}

	c, err := amqp.Dial(amqpURL(s, "limited"))
	must(t, err)
	defer c.Close()

	// Server-named queue: configure on amq.gen-* is granted.
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	// queue.bind: write on the queue, read on the exchange.
	must(t, ch.QueueBind(q, "k", "amq.topic", false, nil))

	// Publish without write on the exchange: 403 channel error.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, ch, "amq.topic", "k", amqp.Publishing{Body: []byte("x")})
	e = waitClose(t, closed)
	if e.Code != amqp.AccessRefused || !strings.Contains(e.Reason, "write access to exchange 'amq.topic' in vhost '/' refused for user 'limited'") {
		t.Fatalf("publish: %d %q", e.Code, e.Reason)
	}
	// The default exchange is checked as amq.default.
	ch = mustChannel(t, c)
	closed = ch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	if e = waitClose(t, closed); e.Code != amqp.AccessRefused || !strings.Contains(e.Reason, "amq.default") {
		t.Fatalf("default exchange publish: %d %q", e.Code, e.Reason)
	}

	// Consume and get without read on the queue.
	ch = mustChannel(t, c)
	_, err = ch.Consume("secret", "", true, false, false, false, nil)
	expectCode(t, err, amqp.AccessRefused)
	ch = mustChannel(t, c)
	_, _, err = ch.Get("secret", true)
	expectCode(t, err, amqp.AccessRefused)
	// Bind of a queue it may not write to.
	ch = mustChannel(t, c)
	expectCode(t, ch.QueueBind("secret", "k", "amq.topic", false, nil), amqp.AccessRefused)

	// The refusals were channel errors: the connection still works, and
	// a message published by guest reaches limited's own queue.
	ch = mustChannel(t, c)
	ds := mustConsume(t, ch, q, "", true)
	mustPublish(t, admin, "amq.topic", "k", amqp.Publishing{Body: []byte("hello")})
	if d := recv(t, ds); string(d.Body) != "hello" {
		t.Fatalf("got %q", d.Body)
	}

	// Granting and revoking take effect on an open channel, through its
	// cache of the last exchange allowed.
	limited, _ := users.Permissions("limited", "/")
	wider := limited
	wider.Write = `^(amq\.gen-.*|mqtt-subscription-.*|amq\.topic)$`
	must(t, users.SetPermissions("limited", "/", wider))
	pch := mustChannel(t, c)
	mustPublish(t, pch, "amq.topic", "k", amqp.Publishing{Body: []byte("1")})
	if d := recv(t, ds); string(d.Body) != "1" {
		t.Fatalf("got %q", d.Body)
	}
	must(t, users.SetPermissions("limited", "/", limited))
	closed = pch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, pch, "amq.topic", "k", amqp.Publishing{Body: []byte("2")})
	if e = waitClose(t, closed); e.Code != amqp.AccessRefused {
		t.Fatalf("after revoke: %d %q", e.Code, e.Reason)
	}
}

func TestPermissionsMQTT(t *testing.T) {
	t.Parallel()
	users := permUsers(t)
	s := startServer(t, withUsers(users), withAllProtocols())
	addr := s.MQTTAddr().String()

	// 3.1.1 without vhost access: CONNACK 0x05 (not authorized).
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("out3").SetUsername("outsider").SetPassword("pw").SetAutoReconnect(false).SetConnectRetry(false)
	c3 := mqtt.NewClient(o)
	tok := c3.Connect()
	if !tok.WaitTimeout(waitTimeout) || tok.Error() == nil || !strings.Contains(tok.Error().Error(), "not Authorized") {
		t.Fatalf("v3 outsider connect: %v", tok.Error())
	}

	// v5 without vhost access: CONNACK 0x87.
	if ca := v5Connect(t, addr, "out5", "outsider", false); ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("v5 outsider connack: %+v", ca)
	}

	// limited over v5: connects (configure+read on its session queue),
	// subscribes (write on it, read on amq.topic), but its QoS 1 publish
	// gets PUBACK 0x87: no write on amq.topic.
	vc := v5Client(t, addr, "lim5", "limited")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sa, err := vc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}})
	if err != nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe: %v %+v", err, sa)
	}
	pr, err := vc.Publish(ctx, &paho.Publish{Topic: "t/1", QoS: 1, Payload: []byte("x")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("publish: %+v %v", pr, err)
	}

	// A user without read on amq.topic: SUBACK 0x87 (v5).
	users.PutUser("noread", "pw", nil)
	must(t, users.SetPermissions("noread", "/", auth.Permissions{Configure: ".*", Write: ".*", Read: "^mqtt-subscription-"}))
	nr := v5Client(t, addr, "nr5", "noread")
	sa, err = nr.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "t/#", QoS: 1}}})
	if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x87 {
		t.Fatalf("noread subscribe: %+v %v", sa, err)
	}

	// 3.1.1 publish without write: the connection is closed (no negative
	// PUBACK in 3.1.1), as RabbitMQ does.
	lost := make(chan error, 1)
	o = mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("lim3").SetUsername("limited").SetPassword("pw").
		SetAutoReconnect(false).SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	c3 = mqtt.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 limited connect: %v", tok.Error())
	}
	defer c3.Disconnect(0)
	c3.Publish("t/1", 1, false, "x")
	select {
	case <-lost:
	case <-time.After(waitTimeout):
		t.Fatal("3.1.1 connection not closed after an unauthorised publish")
	}
}

func v5Connect(t *testing.T, addr, id, user string, fatal bool) *paho.Connack {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	must(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, Username: user, UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true, KeepAlive: 30})
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-c.Done()
	})
	if err != nil && fatal {
		t.Fatalf("v5 connect %s: %v", user, err)
	}
	return ca
}

func v5Client(t *testing.T, addr, id, user string) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	must(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, Username: user, UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true, KeepAlive: 30}); err != nil {
		t.Fatalf("v5 connect %s: %v", user, err)
	}
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-c.Done()
	})
	return c
}

func TestPermissionsSTOMP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withUsers(permUsers(t)), withAllProtocols())
	admin := mustChannel(t, s.dial(t))
	_, err := admin.QueueDeclare("secret", false, false, false, false, nil)
	must(t, err)
	addr := s.STOMPAddr().String()
	dial := func(user string) (*stomp.Conn, error) {
		return stomp.Dial("tcp", addr, stomp.ConnOpt.Login(user, "pw"), stomp.ConnOpt.Host("/"))
	}

	if _, err := dial("outsider"); err == nil || !strings.Contains(err.Error(), "access_refused") {
		t.Fatalf("outsider connect: %v", err)
	}

	// SEND to a topic without write on amq.topic: ERROR.
	c, err := dial("limited")
	must(t, err)
	err = c.Send("/topic/t.1", "text/plain", []byte("x"), stomp.SendOpt.Receipt)
	if err == nil || !strings.Contains(err.Error(), "access_refused") {
		t.Fatalf("send: %v", err)
	}
	// (No Disconnect after an ERROR: the server closed the connection,
	// and go-stomp panics when asked to disconnect a closed one.)

	// SUBSCRIBE to a queue without read on it: ERROR.
	c, err = dial("limited")
	must(t, err)
	sub, err := c.Subscribe("/amq/queue/secret", stomp.AckAuto)
	must(t, err)
	select {
	case m := <-sub.C:
		if m == nil || m.Err == nil || !strings.Contains(m.Err.Error(), "access_refused") {
			t.Fatalf("subscribe: %v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no ERROR for an unauthorised SUBSCRIBE")
	}

	// What is allowed still works: a /topic/ subscription (amq.gen queue
	// bound to amq.topic) receives guest's publish.
	c, err = dial("limited")
	must(t, err)
	defer c.Disconnect()
	sub, err = c.Subscribe("/topic/t.#", stomp.AckAuto)
	must(t, err)
	eventually(t, "the subscription's binding", func() bool {
		mustPublish(t, admin, "amq.topic", "t.probe", amqp.Publishing{Body: []byte("probe")})
		select {
		case m := <-sub.C:
			return m != nil && m.Err == nil
		case <-time.After(20 * time.Millisecond):
			return false
		}
	})
}

// httpDo sends a request with basic auth and returns status and body.
func httpDo(t *testing.T, method, url, user, pass string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		must(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	must(t, err)
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func TestPermissionsHTTP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withUsers(permUsers(t)), withAllProtocols())
	admin := mustChannel(t, s.dial(t))
	_, err := admin.QueueDeclare("secret", false, false, false, false, nil)
	must(t, err)
	base := "http://" + s.HTTPAddr().String()
	pub := map[string]any{"routing_key": "k", "payload": "x", "payload_encoding": "string", "properties": map[string]any{}}

	for _, c := range []struct {
		user, method, path string
		body               any
		want               int
		reason             string
	}{
		{"limited", "POST", "/api/exchanges/%2F/amq.topic/publish", pub, 403, "write access to exchange 'amq.topic'"},
		{"limited", "POST", "/v1/publish/amq.topic/k", nil, 403, "write access"},
		{"limited", "POST", "/api/queues/%2F/secret/get", map[string]any{"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}, 403, "read access to queue 'secret'"},
		{"limited", "GET", "/sse?queue=secret", nil, 403, "read access to queue 'secret'"},
		{"outsider", "POST", "/api/exchanges/%2F/amq.topic/publish", pub, 403, "access to vhost '/' refused for user 'outsider'"},
		{"guest", "POST", "/api/exchanges/%2F/amq.topic/publish", pub, 200, ""},
		// Management: no tag, no management API; administrator manages users.
		{"limited", "GET", "/api/overview", nil, 403, "Not management user"},
		{"limited", "GET", "/api/users", nil, 403, "Not administrator user"},
	} {
		st, body := httpDo(t, c.method, base+c.path, c.user, "pw", c.body)
		if c.user == "guest" {
			st, body = httpDo(t, c.method, base+c.path, "guest", "guest", c.body)
		}
		if st != c.want || !strings.Contains(string(body), c.reason) {
			t.Errorf("%s %s %s: %d %s, want %d %q", c.user, c.method, c.path, st, body, c.want, c.reason)
		}
	}

	// The users and permissions API, as guest (administrator).
	g := func(method, path string, body any, want int) []byte {
		t.Helper()
		st, b := httpDo(t, method, base+path, "guest", "guest", body)
		if st != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, st, b, want)
		}
		return b
	}
	g("PUT", "/api/users/ops", map[string]any{"password": "pw", "tags": "monitoring"}, 201)
	g("PUT", "/api/users/ops", map[string]any{"password": "pw", "tags": "monitoring,management"}, 204)
	var u map[string]any
	must(t, json.Unmarshal(g("GET", "/api/users/ops", nil, 200), &u))
	if u["hashing_algorithm"] != auth.HashingAlgorithm || fmt.Sprint(u["tags"]) != "[monitoring management]" {
		t.Fatalf("user %v", u)
	}
	// A new user has no permissions (RabbitMQ's add_user).
	if _, err := amqp.Dial(amqpURL(s, "ops")); amqpCode(err) != amqp.NotAllowed {
		t.Fatalf("ops before permissions: %v", err)
	}
	g("PUT", "/api/permissions/%2F/ops", map[string]any{"configure": "", "write": "^amq\\.topic$", "read": ".*"}, 201)
	var p map[string]string
	must(t, json.Unmarshal(g("GET", "/api/permissions/%2F/ops", nil, 200), &p))
	if p["write"] != `^amq\.topic$` || p["user"] != "ops" || p["vhost"] != "/" {
		t.Fatalf("permissions %v", p)
	}
	c, err := amqp.Dial(amqpURL(s, "ops"))
	must(t, err)
	c.Close()
	// monitoring may read the management API, not manage users.
	if st, _ := httpDo(t, "GET", base+"/api/queues", "ops", "pw", nil); st != 200 {
		t.Fatalf("monitoring reads queues: %d", st)
	}
	if st, _ := httpDo(t, "PUT", base+"/api/users/x", "ops", "pw", map[string]any{"password": "x"}); st != 403 {
		t.Fatalf("monitoring creates a user: %d", st)
	}
	var me map[string]any
	st, b := httpDo(t, "GET", base+"/api/whoami", "ops", "pw", nil)
	must(t, json.Unmarshal(b, &me))
	if st != 200 || me["name"] != "ops" {
		t.Fatalf("whoami %d %s", st, b)
	}
	var list []map[string]any
	must(t, json.Unmarshal(g("GET", "/api/permissions", nil, 200), &list))
	if len(list) != 3 { // guest, limited, ops on "/"
		t.Fatalf("permissions list %v", list)
	}
	g("PUT", "/api/permissions/%2F/nobody", map[string]any{"configure": ".*", "write": ".*", "read": ".*"}, 400)
	g("PUT", "/api/permissions/%2F/ops", map[string]any{"configure": "(", "write": "", "read": ""}, 400)
	g("PUT", "/api/vhosts/dev", nil, 201)
	// Creating a vhost grants nobody anything, its creator included.
	if _, err := amqp.Dial(s.URL + "dev"); amqpCode(err) != amqp.NotAllowed {
		t.Fatalf("guest into a new vhost: %v", err)
	}
	g("DELETE", "/api/permissions/%2F/ops", nil, 204)
	if _, err := amqp.Dial(amqpURL(s, "ops")); amqpCode(err) != amqp.NotAllowed {
		t.Fatalf("ops after revoke: %v", err)
	}
	g("DELETE", "/api/users/ops", nil, 204)
	g("GET", "/api/users/ops", nil, 404)
}

// TestUsersSurviveRestart: users and permissions made through the API are
// in the definitions file and come back on the same data directory; a
// deleted default user stays deleted.
func TestUsersSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() *app.App {
		srv, err := app.New(app.Config{AMQPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dir,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		must(t, err)
		must(t, srv.Start())
		return srv
	}
	stop := func(srv *app.App) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		must(t, srv.Shutdown(ctx))
	}
	srv := start()
	base := "http://" + srv.HTTPAddr().String()
	for _, r := range []struct {
		method, path, user, pass string
		body                     any
	}{
		{"PUT", "/api/users/admin2", "guest", "guest", map[string]any{"password": "pw", "tags": "administrator"}},
		{"PUT", "/api/permissions/%2F/admin2", "guest", "guest", map[string]any{"configure": ".*", "write": ".*", "read": ".*"}},
		{"PUT", "/api/users/app", "admin2", "pw", map[string]any{"password": "pw"}},
		{"PUT", "/api/permissions/%2F/app", "admin2", "pw", map[string]any{"configure": "^app\\.", "write": "^app\\.", "read": "^app\\."}},
		{"DELETE", "/api/users/guest", "admin2", "pw", nil},
	} {
		if st, b := httpDo(t, r.method, base+r.path, r.user, r.pass, r.body); st/100 != 2 {
			t.Fatalf("%s %s: %d %s", r.method, r.path, st, b)
		}
	}
	stop(srv)

	srv = start()
	defer stop(srv)
	url := func(user string) string { return fmt.Sprintf("amqp://%s@%s/", user, srv.AMQPAddr()) }
	if _, err := amqp.Dial(url("guest:guest")); amqpCode(err) != amqp.AccessRefused {
		t.Fatalf("deleted guest came back: %v", err)
	}
	c, err := amqp.Dial(url("app:pw"))
	must(t, err)
	defer c.Close()
	ch := mustChannel(t, c)
	_, err = ch.QueueDeclare("app.q", false, true, true, false, nil)
	must(t, err)
	ch = mustChannel(t, c)
	_, err = ch.QueueDeclare("other", false, true, true, false, nil)
	expectCode(t, err, amqp.AccessRefused)
	if st, _ := httpDo(t, "GET", "http://"+srv.HTTPAddr().String()+"/api/users", "admin2", "pw", nil); st != 200 {
		t.Fatalf("admin2 after restart: %d", st)
	}
}
