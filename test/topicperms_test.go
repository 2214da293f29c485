package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/auth"
)

// topicUsers: guest, and "iot" with every resource permission on "/"
// but topic permissions on amq.topic: publish only under devices.<its
// client id>., subscribe under devices.<client id>. or cmd.
func topicUsers(t *testing.T) *auth.Users {
	t.Helper()
	u := auth.NewDefaultUsers()
	u.PutUser("iot", "pw", nil)
	must(t, u.SetPermissions("iot", "/", auth.AllPermissions))
	_, err := u.SetTopicPermissions("iot", "/", auth.TopicPermissions{Exchange: "amq.topic",
		Write: `^devices\.{client_id}\.`, Read: `^(devices\.{client_id}|cmd|{username})\.`})
	must(t, err)
	return u
}

func TestTopicPermissionsAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	base := "http://" + s.HTTPAddr().String() + "/api"
	do := func(method, path string, body any) (int, string) {
		st, out := httpDo(t, method, base+path, "guest", "guest", body)
		return st, string(out)
	}
	st, _ := do("PUT", "/users/iot", map[string]any{"password": "pw", "tags": ""})
	if st != http.StatusCreated {
		t.Fatalf("put user: %d", st)
	}
	entry := map[string]string{"exchange": "amq.topic", "write": "^a\\.", "read": ".*"}
	if st, out := do("PUT", "/topic-permissions/%2F/iot", entry); st != http.StatusCreated {
		t.Fatalf("first put: %d %s", st, out)
	}
	if st, out := do("PUT", "/topic-permissions/%2F/iot", entry); st != http.StatusNoContent {
		t.Fatalf("replace: %d %s", st, out)
	}
	if st, _ := do("PUT", "/topic-permissions/%2F/iot", map[string]string{"exchange": "logs", "write": "", "read": "^x$"}); st != http.StatusCreated {
		t.Fatalf("second exchange: %d", st)
	}
	// Bad input: 400 naming the field, 404 for an unknown vhost.
	for _, c := range []struct {
		body any
		want string
	}{
		{map[string]string{"exchange": "amq.topic", "write": "(", "read": ""}, "invalid write pattern"},
		{map[string]string{"exchange": "amq.topic", "write": "", "read": "[{username}"}, "invalid read pattern"},
		{map[string]string{"exchange": "amq.topic", "write": ""}, "key_missing: read"},
		{map[string]string{"write": "", "read": ""}, "key_missing: exchange"},
		{map[string]any{"exchange": "amq.topic", "write": 1, "read": ""}, "write"},
	} {
		st, out := do("PUT", "/topic-permissions/%2F/iot", c.body)
		if st != http.StatusBadRequest || !strings.Contains(out, c.want) {
			t.Errorf("%v: %d %s, want 400 with %q", c.body, st, out, c.want)
		}
	}
	if st, out := do("PUT", "/topic-permissions/%2F/nobody", entry); st != http.StatusBadRequest || !strings.Contains(out, "no_such_user") {
		t.Errorf("unknown user: %d %s", st, out)
	}
	if st, _ := do("PUT", "/topic-permissions/nowhere/iot", entry); st != http.StatusNotFound {
		t.Errorf("unknown vhost: %d", st)
	}

	var list []map[string]string
	for _, path := range []string{"/topic-permissions", "/topic-permissions/%2F/iot", "/users/iot/topic-permissions", "/vhosts/%2F/topic-permissions"} {
		st, out := do("GET", path, nil)
		if st != http.StatusOK {
			t.Fatalf("GET %s: %d", path, st)
		}
		must(t, json.Unmarshal([]byte(out), &list))
		want := []map[string]string{
			{"user": "iot", "vhost": "/", "exchange": "amq.topic", "write": "^a\\.", "read": ".*"},
			{"user": "iot", "vhost": "/", "exchange": "logs", "write": "", "read": "^x$"},
		}
		if fmt.Sprint(list) != fmt.Sprint(want) {
			t.Fatalf("GET %s: %v", path, list)
		}
	}
	st, out := do("GET", "/topic-permissions/%2F/iot/logs", nil)
	if must(t, json.Unmarshal([]byte(out), &list)); st != http.StatusOK || len(list) != 1 || list[0]["exchange"] != "logs" {
		t.Fatalf("GET one exchange: %d %s", st, out)
	}
	if st, _ := do("GET", "/topic-permissions/%2F/guest", nil); st != http.StatusNotFound {
		t.Errorf("a user without entries: %d", st)
	}
	if st, _ := do("GET", "/users/nobody/topic-permissions", nil); st != http.StatusNotFound {
		t.Errorf("unknown user: %d", st)
	}
	// Non-administrators are refused, as RabbitMQ.
	if st, _ := httpDo(t, "GET", base+"/topic-permissions", "iot", "pw", nil); st != http.StatusForbidden && st != http.StatusUnauthorized {
		t.Errorf("non-admin: %d", st)
	}

	// The definitions export carries them (RabbitMQ's topic_permissions).
	st, out = do("GET", "/definitions", nil)
	var defs struct {
		TopicPermissions []map[string]string `json:"topic_permissions"`
	}
	if must(t, json.Unmarshal([]byte(out), &defs)); st != http.StatusOK || len(defs.TopicPermissions) != 2 {
		t.Fatalf("definitions: %d %v", st, defs.TopicPermissions)
	}

	// DELETE one exchange's entry: 204, then 404; then the rest.
	if st, _ := do("DELETE", "/topic-permissions/%2F/iot/logs", nil); st != http.StatusNoContent {
		t.Fatalf("delete one: %d", st)
	}
	if st, _ := do("DELETE", "/topic-permissions/%2F/iot/logs", nil); st != http.StatusNotFound {
		t.Fatalf("delete one again: %d", st)
	}
	if st, _ := do("DELETE", "/topic-permissions/%2F/iot", nil); st != http.StatusNoContent {
		t.Fatalf("delete all: %d", st)
	}
	if st, _ := do("DELETE", "/topic-permissions/%2F/iot", nil); st != http.StatusNotFound {
		t.Fatalf("delete all again: %d", st)
	}
	// A definitions import (rabbitmqadmin import, POST /api/definitions)
	// brings topic_permissions in.
	if st, out := do("POST", "/definitions", map[string]any{"topic_permissions": []map[string]string{
		{"user": "iot", "vhost": "/", "exchange": "imported", "write": "^w", "read": "^r"}}}); st/100 != 2 {
		t.Fatalf("import: %d %s", st, out)
	}
	if st, out := do("GET", "/topic-permissions/%2F/iot/imported", nil); st != http.StatusOK || !strings.Contains(out, `"write":"^w"`) {
		t.Fatalf("after import: %d %s", st, out)
	}
}

// Topic permissions survive a restart: they are in the definitions file.
func TestTopicPermissionsSurviveRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	start := func() *app.App {
		srv, err := app.New(app.Config{AMQPAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", DataDir: dir, BcryptCost: 4,
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
	s := start()
	base := "http://" + s.HTTPAddr().String() + "/api"
	if st, _ := httpDo(t, "PUT", base+"/users/iot", "guest", "guest", map[string]any{"password": "pw", "tags": ""}); st != http.StatusCreated {
		t.Fatalf("put user: %d", st)
	}
	if st, _ := httpDo(t, "PUT", base+"/topic-permissions/%2F/iot", "guest", "guest", map[string]string{"exchange": "amq.topic", "write": "^{username}\\.", "read": ""}); st != http.StatusCreated {
		t.Fatalf("put: %d", st)
	}
	stop(s)
	s2 := start()
	defer stop(s2)
	st, out := httpDo(t, "GET", "http://"+s2.HTTPAddr().String()+"/api/topic-permissions/%2F/iot", "guest", "guest", nil)
	if st != http.StatusOK || !strings.Contains(string(out), `"write":"^{username}\\."`) {
		t.Fatalf("after restart: %d %s", st, out)
	}
}

// AMQP: a publish to a topic exchange needs write on its routing key, a
// queue.bind read on its binding key (channel error 403); other exchange
// types are not checked; a change applies to channels opened afterwards.
func TestTopicPermissionsAMQP(t *testing.T) {
	t.Parallel()
	users := topicUsers(t)
	s := startServer(t, withUsers(users))
	// AMQP has no client id: {client_id} stays as written, so only the
	// {username} and cmd branches of iot's read pattern can match.
	c, err := amqp.Dial(amqpURL(s, "iot"))
	must(t, err)
	defer c.Close()
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	must(t, ch.QueueBind(q, "iot.#", "amq.topic", false, nil))
	must(t, ch.QueueBind(q, "cmd.*", "amq.topic", false, nil))
	err = ch.QueueBind(q, "devices.#", "amq.topic", false, nil)
	if e := expectCode(t, err, amqp.AccessRefused); !strings.Contains(e.Reason, "read access to topic 'devices.#' in exchange 'amq.topic' in vhost '/' refused for user 'iot'") {
		t.Fatalf("bind reason %q", e.Reason)
	}

	// Write: nothing matches ^devices\.{client_id}\. without a client id.
	ch = mustChannel(t, c)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	mustPublish(t, ch, "amq.topic", "devices.x.temp", amqp.Publishing{Body: []byte("x")})
	if e := waitClose(t, closed); e.Code != amqp.AccessRefused || !strings.Contains(e.Reason, "write access to topic 'devices.x.temp'") {
		t.Fatalf("publish: %d %q", e.Code, e.Reason)
	}
	// Not a topic exchange: not checked.
	ch = mustChannel(t, c)
	must(t, ch.ExchangeDeclare("plain", "direct", false, true, false, false, nil))
	mustPublish(t, ch, "plain", "devices.x.temp", amqp.Publishing{Body: []byte("x")})
	assertAlive(t, c)

	// Relaxed: a channel opened afterwards may publish; the message
	// routes to guest's consumer.
	_, err = users.SetTopicPermissions("iot", "/", auth.TopicPermissions{Exchange: "amq.topic", Write: `^devices\.`, Read: ".*"})
	must(t, err)
	admin := mustChannel(t, s.dial(t))
	aq := tempQueue(t, admin)
	must(t, admin.QueueBind(aq, "devices.#", "amq.topic", false, nil))
	in := mustConsume(t, admin, aq, "", true)
	ch = mustChannel(t, c)
	mustPublish(t, ch, "amq.topic", "devices.x.temp", amqp.Publishing{Body: []byte("21")})
	if d := recv(t, in); string(d.Body) != "21" {
		t.Fatalf("got %q", d.Body)
	}
}

// MQTT: topics as keys ("a/b" is "a.b"), {client_id} the MQTT client id.
// v5: PUBACK and SUBACK 0x87; 3.1.1: SUBACK 0x80 and the connection
// stays; a refused 3.1.1 publish closes the connection, as RabbitMQ's
// MQTT plugin does (mqtt.disconnect_on_unauthorized, true by default).
func TestTopicPermissionsMQTT(t *testing.T) {
	t.Parallel()
	s := startServer(t, withUsers(topicUsers(t)), withAllProtocols())
	addr := s.MQTTAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	v5 := v5Client(t, addr, "c1", "iot")
	sa, err := v5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/c1/#", QoS: 1}, {Topic: "devices/c2/#", QoS: 1}, {Topic: "cmd/+", QoS: 0}, {Topic: "iot/x", QoS: 1}}})
	if sa == nil || fmt.Sprint(sa.Reasons) != "[1 135 0 1]" {
		t.Fatalf("v5 subscribe: %v %+v", err, sa)
	}
	pr, err := v5.Publish(ctx, &paho.Publish{Topic: "devices/c1/temp", QoS: 1, Payload: []byte("ok")})
	if err != nil || pr.ReasonCode != 0 {
		t.Fatalf("v5 own topic: %+v %v", pr, err)
	}
	pr, _ = v5.Publish(ctx, &paho.Publish{Topic: "devices/c2/temp", QoS: 1, Payload: []byte("x")})
	if pr == nil || pr.ReasonCode != 0x87 {
		t.Fatalf("v5 another client's topic: %+v", pr)
	}

	// 3.1.1, client id c3.
	lost := make(chan error, 1)
	got := make(chan string, 4)
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("c3").SetUsername("iot").SetPassword("pw").
		SetAutoReconnect(false).SetConnectionLostHandler(func(_ mqtt.Client, err error) { lost <- err })
	c3 := mqtt.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 connect: %v", tok.Error())
	}
	defer c3.Disconnect(0)
	tok := c3.SubscribeMultiple(map[string]byte{"devices/c1/#": 1, "devices/c3/#": 1}, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() })
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatal("v3 subscribe timed out")
	}
	res := tok.(*mqtt.SubscribeToken).Result()
	if res["devices/c1/#"] != 0x80 || res["devices/c3/#"] != 1 {
		t.Fatalf("v3 suback %v", res)
	}
	// The connection stays: its own topic still round-trips.
	if tok := c3.Publish("devices/c3/t", 1, false, "mine"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("v3 publish own topic: %v", tok.Error())
	}
	select {
	case topic := <-got:
		if topic != "devices/c3/t" {
			t.Fatalf("got %q", topic)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the 3.1.1 client lost its connection or its message after a refused filter")
	}
	c3.Publish("devices/c1/t", 0, false, "not mine")
	select {
	case <-lost:
	case <-time.After(waitTimeout):
		t.Fatal("3.1.1 connection not closed after a refused publish")
	}
}

// STOMP: /topic/k is amq.topic with key k; a refused SEND or SUBSCRIBE
// gets an ERROR frame.
func TestTopicPermissionsSTOMP(t *testing.T) {
	t.Parallel()
	users := topicUsers(t)
	_, err := users.SetTopicPermissions("iot", "/", auth.TopicPermissions{Exchange: "amq.topic", Write: `^ok\.`, Read: `^ok\.`})
	must(t, err)
	s := startServer(t, withUsers(users), withAllProtocols())
	dial := func() *stomp.Conn {
		c, err := stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("iot", "pw"), stomp.ConnOpt.Host("/"))
		must(t, err)
		return c
	}
	c := dial()
	defer c.Disconnect()
	sub, err := c.Subscribe("/topic/ok.#", stomp.AckAuto)
	must(t, err)
	must(t, c.Send("/topic/ok.1", "text/plain", []byte("fine"), stomp.SendOpt.Receipt))
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "fine" {
			t.Fatalf("message %v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no message on the allowed topic")
	}

	bad := dial()
	err = bad.Send("/topic/no.1", "text/plain", []byte("x"), stomp.SendOpt.Receipt)
	if err == nil || !strings.Contains(err.Error(), "access_refused") {
		t.Fatalf("send: %v", err)
	}
	bad = dial()
	bs, err := bad.Subscribe("/topic/no.#", stomp.AckAuto)
	must(t, err)
	select {
	case m := <-bs.C:
		if m == nil || m.Err == nil || !strings.Contains(m.Err.Error(), "access_refused") {
			t.Fatalf("subscribe: %v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no ERROR for a refused SUBSCRIBE")
	}
}

// Web: a /ws subscription and publish, and HTTP publishes, to a topic
// exchange are checked the same way (403).
func TestTopicPermissionsWeb(t *testing.T) {
	t.Parallel()
	users := topicUsers(t)
	_, err := users.SetTopicPermissions("iot", "/", auth.TopicPermissions{Exchange: "amq.topic", Write: `^ok\.`, Read: `^ok\.`})
	must(t, err)
	s := startServer(t, withUsers(users), withAllProtocols())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("iot:pw"))
	ws, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/ws", &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {basic}}})
	must(t, err)
	defer ws.CloseNow()
	exchange := func(req map[string]any) map[string]any {
		t.Helper()
		must(t, wsjson.Write(ctx, ws, req))
		var m map[string]any
		must(t, wsjson.Read(ctx, ws, &m))
		return m
	}
	if m := exchange(map[string]any{"op": "subscribe", "id": "s1", "exchange": "amq.topic", "key": "ok.#"}); m["op"] != "subscribed" {
		t.Fatalf("allowed subscribe: %v", m)
	}
	if m := exchange(map[string]any{"op": "subscribe", "id": "s2", "exchange": "amq.topic", "key": "no.#"}); m["op"] != "error" || m["code"] != float64(403) || !strings.Contains(fmt.Sprint(m["message"]), "read access to topic 'no.#'") {
		t.Fatalf("refused subscribe: %v", m)
	}
	if m := exchange(map[string]any{"op": "publish", "id": 1, "exchange": "amq.topic", "key": "no.1", "body": "x", "confirm": true}); m["op"] != "error" || m["code"] != float64(403) {
		t.Fatalf("refused publish: %v", m)
	}
	base := "http://" + s.HTTPAddr().String()
	if st, out := httpDo(t, "POST", base+"/api/exchanges/%2F/amq.topic/publish", "iot", "pw",
		map[string]any{"routing_key": "no.1", "payload": "x", "payload_encoding": "string", "properties": map[string]any{}}); st != http.StatusForbidden || !strings.Contains(string(out), "write access to topic 'no.1'") {
		t.Fatalf("http publish: %d %s", st, out)
	}
	if st, out := httpDo(t, "POST", base+"/api/exchanges/%2F/amq.topic/publish", "iot", "pw",
		map[string]any{"routing_key": "ok.1", "payload": "x", "payload_encoding": "string", "properties": map[string]any{}}); st != http.StatusOK {
		t.Fatalf("allowed http publish: %d %s", st, out)
	}
	// A binding made through the management API is a queue.bind too.
	users.PutUser("iot", "pw", []string{auth.TagManagement}) // keeps its permissions
	ch := mustChannel(t, s.dial(t))
	_, err = ch.QueueDeclare("iotq", false, true, false, false, nil)
	must(t, err)
	for key, want := range map[string]int{"no.#": http.StatusForbidden, "ok.#": http.StatusCreated} {
		if st, out := httpDo(t, "POST", base+"/api/bindings/%2F/e/amq.topic/q/iotq", "iot", "pw", map[string]any{"routing_key": key}); st != want {
			t.Errorf("api binding %q: %d %s, want %d", key, st, out, want)
		}
	}
}

// A last will is published under the same checks as a PUBLISH: one on a
// topic the client may not write to is dropped.
func TestTopicPermissionsMQTTWill(t *testing.T) {
	t.Parallel()
	s := startServer(t, withUsers(topicUsers(t)), withAllProtocols())
	addr := s.MQTTAddr().String()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	admin := mustChannel(t, s.dial(t))
	q := tempQueue(t, admin)
	must(t, admin.QueueBind(q, "devices.#", "amq.topic", false, nil))
	in := mustConsume(t, admin, q, "", true)

	dieWith := func(id, topic string) {
		nc, err := net.Dial("tcp", addr)
		must(t, err)
		c := paho.NewClient(paho.ClientConfig{Conn: nc})
		_, err = c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, Username: "iot", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true,
			WillMessage: &paho.WillMessage{Topic: topic, Payload: []byte(id)}})
		must(t, err)
		nc.Close() // no DISCONNECT: the will is due
		<-c.Done()
	}
	dieWith("w1", "devices/w2/gone") // another client's topic: dropped
	dieWith("w2", "devices/w2/gone") // its own: published
	if d := recv(t, in); string(d.Body) != "w2" {
		t.Fatalf("got the will of %q", d.Body)
	}
	expectNoDelivery(t, in)
}
