package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

func withAllProtocols() serverOption {
	return func(c *app.Config) {
		c.MQTTAddr = "127.0.0.1:0"
		c.HTTPAddr = "127.0.0.1:0"
		c.STOMPAddr = "127.0.0.1:0"
	}
}

// TestMQTTToWebSocketAndAMQP: one MQTT publish reaches a browser-style
// WebSocket subscriber and an AMQP consumer through the one core; an AMQP
// publish reaches the MQTT subscriber.
func TestMQTTToWebSocketAndAMQP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// WebSocket subscriber (basic auth on the upgrade request).
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("guest:guest"))
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("ws://%s/ws", s.HTTPAddr()), &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {auth}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := wsjson.Write(ctx, ws, map[string]any{"op": "subscribe", "id": "s", "exchange": "amq.topic", "key": "sensors.*.temp"}); err != nil {
		t.Fatal(err)
	}
	var ok map[string]any
	if err := wsjson.Read(ctx, ws, &ok); err != nil || ok["op"] != "subscribed" {
		t.Fatalf("subscribe: %v %v", ok, err)
	}

	// AMQP consumer bound the same way.
	ch := mustChannel(t, s.dial(t))
	q := tempQueue(t, ch)
	if err := ch.QueueBind(q, "sensors.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	amqpIn := mustConsume(t, ch, q, "", true)

	// MQTT client: subscribe, then publish.
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr().String()).SetClientID("cross").SetUsername("guest").SetPassword("guest")
	mc := mqtt.NewClient(opts)
	if tok := mc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer mc.Disconnect(100)
	mqttIn := make(chan mqtt.Message, 4)
	if tok := mc.Subscribe("alerts/#", 1, func(_ mqtt.Client, m mqtt.Message) { mqttIn <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt subscribe: %v", tok.Error())
	}
	if tok := mc.Publish("sensors/7/temp", 1, false, "21.5"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt publish: %v", tok.Error())
	}

	var msg map[string]any
	if err := wsjson.Read(ctx, ws, &msg); err != nil {
		t.Fatal(err)
	}
	if msg["op"] != "message" || msg["body"] != "21.5" || msg["key"] != "sensors.7.temp" {
		t.Errorf("websocket got %v", msg)
	}
	if d := recv(t, amqpIn); string(d.Body) != "21.5" || d.RoutingKey != "sensors.7.temp" {
		t.Errorf("amqp got %q via %q", d.Body, d.RoutingKey)
	}

	mustPublish(t, ch, "amq.topic", "alerts.fire", amqp.Publishing{Body: []byte("evacuate")})
	select {
	case m := <-mqttIn:
		if m.Topic() != "alerts/fire" || string(m.Payload()) != "evacuate" {
			t.Errorf("mqtt got %q on %q", m.Payload(), m.Topic())
		}
	case <-ctx.Done():
		t.Fatal("the AMQP publish did not reach the MQTT subscriber")
	}
}

// TestConsoleAndMetricsServed: the console page and /metrics are on the
// HTTP listener of a running server.
func TestConsoleAndMetricsServed(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	ch := mustChannel(t, s.dial(t))
	if _, err := ch.QueueDeclare("metered", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, ch, "", "metered", amqp.Publishing{Body: []byte("x")})
	get := func(path string) string {
		resp, err := http.Get(fmt.Sprintf("http://%s%s", s.HTTPAddr(), path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return string(b)
	}
	if page := get("/"); !strings.Contains(strings.ToLower(page), "<html") {
		t.Errorf("console index is not HTML: %.100s", page)
	}
	m := get("/metrics")
	if !strings.Contains(m, `herald_queue_messages_ready{queue="metered",vhost="/"} 1`) {
		t.Errorf("metrics lack the queue depth:\n%.2000s", m)
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/api/queues/%%2F/metered", s.HTTPAddr()), nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var qi map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&qi); err != nil || qi["messages"] != float64(1) {
		t.Errorf("/api/queues/%%2F/metered = %v (%v)", qi, err)
	}
}
