package test

import (
	"context"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
)

// TestMQTTSubscribeLosesNoEarlyMessage: a message routed to a persistent
// session's queue the moment its subscription's binding is made (while the
// binding is being saved, before the SUBACK) reaches the client. paho's
// functional test Test_ResumeSubs lost that message: the delivery found no
// subscription recorded yet for its topic and settled it as unmatched.
func TestMQTTSubscribeLosesNoEarlyMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.MQTTAddr = "127.0.0.1:0" })
	ch := mustChannel(t, s.dial(t))

	// A publisher floods amq.topic while the client subscribes.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := ch.Publish("amq.topic", "early.t", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
				return
			}
		}
	}()
	stopPublisher := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopPublisher()

	var got atomic.Int64
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + s.MQTTAddr().String()).SetClientID("early").
		SetUsername("guest").SetPassword("guest").SetCleanSession(false).SetAutoReconnect(false).
		SetDefaultPublishHandler(func(mqtt.Client, mqtt.Message) { got.Add(1) })
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("early/t", 0, nil); !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	eventually(t, "messages", func() bool { return got.Load() > 100 })
	stopPublisher()

	q, err := s.Broker().VHost("/").Queue("mqtt-subscription-earlyqos1")
	if err != nil {
		t.Fatal(err)
	}
	// Every message the session queue took reaches the client.
	deadline := time.Now().Add(waitTimeout)
	for {
		st := q.Stats()
		if int64(st.Published) == got.Load() && st.Ready == 0 && st.Unacked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session queue took %d messages, the client got %d", st.Published, got.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// v5Subscriber connects a paho.golang MQTT 5 client whose received messages
// arrive on the returned channel.
func v5Subscriber(t *testing.T, addr, id string) (*paho.Client, <-chan *paho.Publish) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	must(t, err)
	msgs := make(chan *paho.Publish, 16)
	c := paho.NewClient(paho.ClientConfig{Conn: nc, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) { msgs <- pr.Packet; return true, nil }}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		Username: "guest", UsernameFlag: true, Password: []byte("guest"), PasswordFlag: true})
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("v5 connect: %v %+v", err, ca)
	}
	t.Cleanup(func() {
		c.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-c.Done()
	})
	return c, msgs
}

// TestMQTTUserPropertiesKeepOrderAndRepeats: MQTT 5 user properties reach
// MQTT 5 subscribers in order with their repeats [MQTT-3.3.2-18], AMQP
// consumers as headers that lose nothing (a repeated name as an array, the
// whole list in x-mqtt-user-properties), and an AMQP array header reaches
// MQTT as one property per element.
func TestMQTTUserPropertiesKeepOrderAndRepeats(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.MQTTAddr = "127.0.0.1:0" })
	addr := s.MQTTAddr().String()
	ch := mustChannel(t, s.dial(t))
	q := tempQueue(t, ch)
	must(t, ch.QueueBind(q, "props.*", "amq.topic", false, nil))
	in := mustConsume(t, ch, q, "", true)

	sub, msgs := v5Subscriber(t, addr, "props-sub")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "props/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := v5Subscriber(t, addr, "props-pub")
	sent := paho.UserProperties{{Key: "k1", Value: "v1"}, {Key: "k1", Value: "v2"}, {Key: "trace", Value: "abc"}}
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "props/a", QoS: 1, Payload: []byte("x"),
		Properties: &paho.PublishProperties{User: sent}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		if !reflect.DeepEqual(m.Properties.User, sent) {
			t.Fatalf("MQTT subscriber got %v, want %v", m.Properties.User, sent)
		}
	case <-timeAfterWait():
		t.Fatal("no MQTT delivery")
	}
	d := recv(t, in)
	wantList := []any{[]any{"k1", "v1"}, []any{"k1", "v2"}, []any{"trace", "abc"}}
	if !reflect.DeepEqual(d.Headers["k1"], []any{"v1", "v2"}) || d.Headers["trace"] != "abc" ||
		!reflect.DeepEqual(d.Headers["x-mqtt-user-properties"], wantList) {
		t.Fatalf("AMQP headers %#v", d.Headers)
	}

	// AMQP to MQTT: an array header is one property per element.
	mustPublish(t, ch, "amq.topic", "props.b", amqp.Publishing{Body: []byte("y"),
		Headers: amqp.Table{"tag": []any{"red", "blue"}, "n": int32(3)}})
	select {
	case m := <-msgs:
		want := paho.UserProperties{{Key: "n", Value: "3"}, {Key: "tag", Value: "red"}, {Key: "tag", Value: "blue"}}
		if !reflect.DeepEqual(m.Properties.User, want) {
			t.Fatalf("from AMQP: got %v, want %v", m.Properties.User, want)
		}
	case <-timeAfterWait():
		t.Fatal("no MQTT delivery from AMQP")
	}
}
