package test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/server"
)

// TestMQTTSubscribeLosesNoEarlyMessage: a message routed to a persistent
// session's queue the moment its subscription's binding is made (while the
// binding is being saved, before the SUBACK) reaches the client. paho's
// functional test Test_ResumeSubs lost that message: the delivery found no
// subscription recorded yet for its topic and settled it as unmatched.
func TestMQTTSubscribeLosesNoEarlyMessage(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *server.Config) { c.MQTTAddr = "127.0.0.1:0" })
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
