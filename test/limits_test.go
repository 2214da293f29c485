package test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// refusedDial dials AMQP and expects connection.close 530 with text.
func refusedDial(t *testing.T, url, text string) {
	t.Helper()
	c, err := amqp.Dial(url)
	if err == nil {
		c.Close()
		t.Fatalf("connection accepted; want 530 %q", text)
	}
	ae := expectCode(t, err, amqp.NotAllowed)
	if !strings.Contains(ae.Reason, text) {
		t.Fatalf("reason %q lacks %q", ae.Reason, text)
	}
}

// dialEventually retries until the server has counted a closed
// connection out (it does so when the connection's goroutine ends).
func dialEventually(t *testing.T, url string) *amqp.Connection {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := amqp.Dial(url)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if amqpCode(err) != amqp.NotAllowed || time.Now().After(deadline) {
			t.Fatalf("dial: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling the server's release, no event to await
	}
}

func mqttV3(addr, user string) error {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("lim-%d", time.Now().UnixNano())).
		SetUsername(user).SetPassword("guest").SetAutoReconnect(false).SetConnectRetry(false)
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return errors.New("mqtt connect timed out")
	}
	if tok.Error() == nil {
		c.Disconnect(0)
	}
	return tok.Error()
}

func mqttV5Code(t *testing.T, addr string) byte {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	must(t, err)
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, _ := c.Connect(ctx, &paho.Connect{ClientID: "lim5", CleanStart: true, Username: "guest", UsernameFlag: true, Password: []byte("guest"), PasswordFlag: true, KeepAlive: 30})
	nc.Close()
	<-c.Done()
	if ca == nil {
		t.Fatal("no CONNACK")
	}
	return ca.ReasonCode
}

// TestVHostConnectionLimit: the max-connections vhost limit, set with the
// management API, refuses the next login in every protocol with its own
// signal, and admits again once a connection is gone.
func TestVHostConnectionLimit(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	base := "http://" + s.HTTPAddr().String()
	if st, b := httpDo(t, "PUT", base+"/api/vhost-limits/%2F/max-connections", "guest", "guest", map[string]any{"value": 1}); st != http.StatusNoContent {
		t.Fatalf("PUT vhost limit: %d %s", st, b)
	}
	if st, b := httpDo(t, "GET", base+"/api/vhost-limits", "guest", "guest", nil); st != 200 || !strings.Contains(string(b), `{"value":{"max-connections":1},"vhost":"/"}`) {
		t.Fatalf("GET vhost limits: %d %s", st, b)
	}
	if st, _ := httpDo(t, "PUT", base+"/api/vhost-limits/%2F/max-bananas", "guest", "guest", map[string]any{"value": 1}); st != http.StatusBadRequest {
		t.Fatalf("unknown limit: %d", st)
	}

	first, err := amqp.Dial(s.URL)
	must(t, err)
	refusedDial(t, s.URL, "access to vhost '/' refused for user 'guest': connection limit (1) is reached")
	if err := mqttV3(s.MQTTAddr().String(), "guest"); !errors.Is(err, packets.ErrorRefusedServerUnavailable) {
		t.Fatalf("mqtt 3.1.1 over the limit: %v; want server unavailable (3)", err)
	}
	if code := mqttV5Code(t, s.MQTTAddr().String()); code != 0x97 {
		t.Fatalf("mqtt 5 over the limit: CONNACK 0x%x; want 0x97 quota exceeded", code)
	}
	if _, err := stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Host("/")); err == nil || !strings.Contains(err.Error(), "not_allowed") {
		t.Fatalf("stomp over the limit: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+s.HTTPAddr().String()+"/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("guest:guest"))}}})
	must(t, err)
	_, _, err = ws.Read(ctx)
	if st := websocket.CloseStatus(err); st != websocket.StatusTryAgainLater || !strings.Contains(err.Error(), "connection limit (1)") {
		t.Fatalf("websocket over the limit: %v (status %d)", err, st)
	}
	ws.CloseNow()

	first.Close()
	dialEventually(t, s.URL)

	if st, _ := httpDo(t, "DELETE", base+"/api/vhost-limits/%2F/max-connections", "guest", "guest", nil); st != http.StatusNoContent {
		t.Fatalf("DELETE vhost limit: %d", st)
	}
	dialEventually(t, s.URL)
}

func TestUserAndGlobalConnectionLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols(), func(c *app.Config) { c.MaxConnections = 2 })
	base := "http://" + s.HTTPAddr().String()
	if st, b := httpDo(t, "PUT", base+"/api/user-limits/guest/max-connections", "guest", "guest", map[string]any{"value": 0}); st != http.StatusNoContent {
		t.Fatalf("PUT user limit: %d %s", st, b)
	}
	if st, b := httpDo(t, "GET", base+"/api/user-limits", "guest", "guest", nil); st != 200 || !strings.Contains(string(b), `"user":"guest"`) {
		t.Fatalf("GET user limits: %d %s", st, b)
	}
	refusedDial(t, s.URL, "user connection limit (0) is reached")
	if st, _ := httpDo(t, "DELETE", base+"/api/user-limits/guest/max-connections", "guest", "guest", nil); st != http.StatusNoContent {
		t.Fatalf("DELETE user limit: %d", st)
	}
	dialEventually(t, s.URL)
	dialEventually(t, s.URL)
	refusedDial(t, s.URL, "the server's connection limit (2) is reached")
}

// TestMaxQueues: the max-queues vhost limit refuses new queues with 406
// and keeps redeclaring existing ones working.
func TestMaxQueues(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	must(t, s.Broker().SetVHostLimit("/", "max-queues", 1))
	ch := mustChannel(t, s.dial(t))
	_, err := ch.QueueDeclare("lim-q1", false, true, false, false, nil)
	must(t, err)
	_, err = ch.QueueDeclare("lim-q1", false, true, false, false, nil)
	must(t, err)
	_, err = ch.QueueDeclare("lim-q2", false, true, false, false, nil)
	ae := expectCode(t, err, amqp.PreconditionFailed)
	if !strings.Contains(ae.Reason, "cannot declare queue 'lim-q2': queue limit in vhost '/' (1) is reached") {
		t.Fatalf("reason: %s", ae.Reason)
	}
}

// TestMaxPublishRate: a connection limited to 50 msgs/s takes about a
// second past its one-second burst to get 100 messages through, and
// loses none (push-back, not dropping).
func TestMaxPublishRate(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.MaxPublishRate = 50 })
	conn := s.dial(t)
	ch := mustChannel(t, conn)
	q := tempQueue(t, ch)
	ds := mustConsume(t, ch, q, "", true)
	pub := mustChannel(t, s.dial(t))
	start := time.Now()
	for i := range 100 {
		mustPublish(t, pub, "", q, amqp.Publishing{Body: []byte(fmt.Sprint(i))})
	}
	recvN(t, ds, 100)
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Fatalf("100 messages at 50/s (burst 50) took %v; want about 1s", d)
	}
}

// TestProtocolCounters: herald_published/delivered/acked_total by protocol
// and the herald_channels gauge, counted by the adapters, summed at
// scrape time, and kept when the connection closes.
func TestProtocolCounters(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	conn, err := amqp.Dial(s.URL)
	must(t, err)
	ch := mustChannel(t, conn)
	_ = mustChannel(t, conn)
	q := tempQueue(t, ch)
	must(t, ch.QueueBind(q, "count.#", "amq.topic", false, nil))
	ds := mustConsume(t, ch, q, "", false)
	for range 3 {
		mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	}
	if err := mqttPublish(s.MQTTAddr().String(), "count/mqtt"); err != nil {
		t.Fatal(err)
	}
	for _, d := range recvN(t, ds, 4) {
		must(t, d.Ack(false))
	}
	scrape := func() string {
		_, b := httpDo(t, "GET", "http://"+s.HTTPAddr().String()+"/metrics", "guest", "guest", nil)
		return string(b)
	}
	want := []string{
		`herald_published_total{protocol="amqp091"} 3`,
		`herald_published_total{protocol="mqtt"} 1`,
		`herald_delivered_total{protocol="amqp091"} 4`,
		`herald_acked_total{protocol="amqp091"} 4`,
		`herald_channels 2`,
	}
	// Acks travel asynchronously: wait until the scrape shows them.
	deadline := time.Now().Add(waitTimeout)
	for m := scrape(); ; m = scrape() {
		missing := ""
		for _, w := range want {
			if !strings.Contains(m, w) {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s:\n%s", missing, grepLines(m, "herald_"))
		}
		time.Sleep(10 * time.Millisecond) // no event to await: the ack is in flight
	}
	conn.Close()
	// Closed connections' counts stay.
	deadline = time.Now().Add(waitTimeout)
	for m := scrape(); !strings.Contains(m, "herald_channels 0") || !strings.Contains(m, `herald_acked_total{protocol="amqp091"} 4`); m = scrape() {
		if time.Now().After(deadline) {
			t.Fatalf("after close:\n%s", grepLines(m, "herald_"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mqttPublish(addr, topic string) error {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("count-pub").
		SetUsername("guest").SetPassword("guest").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		return fmt.Errorf("mqtt connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, false, "m"); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		return fmt.Errorf("mqtt publish: %v", tok.Error())
	}
	return nil
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) && !strings.HasPrefix(l, "herald_queue") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
