package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// rawV5 connects a hand-driven MQTT 5 client with the given CONNECT
// properties and returns it with its reader.
func (e *testEnv) rawV5(id string, props packet.Properties) (net.Conn, *bufio.Reader, *packet.Connack) {
	e.t.Helper()
	nc := e.v5dial(e.addr)
	e.t.Cleanup(func() { nc.Close() })
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanStart: true, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest"), Properties: props}
	nc.Write(cp.Encode(nil, 5))
	r := bufio.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := packet.Read(r, 5, 0)
	ack, ok := p.(*packet.Connack)
	if err != nil || !ok {
		e.t.Fatalf("connack %#v %v", p, err)
	}
	return nc, r, ack
}

// TestClientReceiveMaximumBoundsRetained: the client's Receive Maximum
// bounds the server's QoS 1 PUBLISHes in flight, retained messages for a
// new subscription included; each PUBACK lets one more go.
func TestClientReceiveMaximumBoundsRetained(t *testing.T) {
	e := startEnv(t, Config{})
	p, _ := e.v5(&paho.Connect{ClientID: "rmw-pub", CleanStart: true})
	const n = 5
	for i := range n {
		p.pub(t, &paho.Publish{Topic: fmt.Sprintf("rmw/%d", i), QoS: 1, Retain: true, Payload: []byte(fmt.Sprint(i))})
	}
	nc, r, ack := e.rawV5("rmw-sub", packet.Properties{ReceiveMaximum: 2})
	if ack.Properties.ReceiveMaximum != DefaultReceiveMaximum {
		t.Fatalf("server Receive Maximum %d, want %d", ack.Properties.ReceiveMaximum, DefaultReceiveMaximum)
	}
	nc.Write((&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "rmw/#", QoS: 1}}}).Encode(nil, 5))
	if pk, err := packet.Read(r, 5, 0); err != nil || pk.Type() != packet.SUBACK {
		t.Fatalf("suback %#v %v", pk, err)
	}
	var inFlight []uint16
	got := 0
	readPublishes := func(want int) {
		t.Helper()
		for range want {
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			pk, err := packet.Read(r, 5, 0)
			pub, ok := pk.(*packet.Publish)
			if err != nil || !ok || !pub.Retain || pub.QoS != 1 {
				t.Fatalf("after %d retained: %#v %v", got, pk, err)
			}
			inFlight = append(inFlight, pub.PacketID)
			got++
		}
		// Nothing more while the window is full: only the clock shows an
		// absence.
		nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if pk, err := packet.Read(r, 5, 0); err == nil {
			t.Fatalf("%d in flight with Receive Maximum 2: got %#v", len(inFlight)+1, pk)
		} else if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
	}
	readPublishes(2)
	for got < n {
		nc.Write((&packet.Ack{Kind: packet.PUBACK, PacketID: inFlight[0]}).Encode(nil, 5))
		inFlight = inFlight[1:]
		readPublishes(min(1, n-got))
	}
}

// TestSessionWithoutRecordFromBindings: a persistent session left by an
// older Herald (a durable session queue bound on amq.topic, no session
// record) is resumed with its bindings as QoS 1 subscriptions.
func TestSessionWithoutRecordFromBindings(t *testing.T) {
	e := startEnv(t, Config{})
	v := e.b.VHost("/")
	if _, err := v.DeclareQueue("mqtt-subscription-legacyqos1", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("mqtt-subscription-legacyqos1", "amq.topic", "leg.*", nil, 0); err != nil {
		t.Fatal(err)
	}
	got := make(chan pahov3.Message, 10)
	c := e.v3("legacy", false, func(o *pahov3.ClientOptions) {
		o.SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { got <- m })
	})
	p := e.v3("legacy-pub", true)
	wait(t, p.Publish("leg/x", 2, false, "hi"))
	select {
	case m := <-got:
		if m.Topic() != "leg/x" || m.Qos() != 1 {
			t.Fatalf("got %q at QoS %d", m.Topic(), m.Qos())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery on the legacy subscription")
	}
	// The resumed session now has a record of its own.
	if v.SessionState().Get(sessionRecordKey("legacy")) == nil {
		t.Fatal("no session record")
	}
	c.Disconnect(0)
}

// TestDisconnectWithZeroExpiryEndsSession: a v5 DISCONNECT that sets the
// Session Expiry Interval to 0 ends the session with the connection.
func TestDisconnectWithZeroExpiryEndsSession(t *testing.T) {
	e := startEnv(t, Config{})
	c, _ := e.v5(&paho.Connect{ClientID: "zero", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: packet.Ptr[uint32](600)}})
	c.sub(t, paho.SubscribeOptions{Topic: "zero/t", QoS: 1})
	v := e.b.VHost("/")
	if v.SessionState().Get(sessionRecordKey("zero")) == nil {
		t.Fatal("no session record")
	}
	c.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: packet.Ptr[uint32](0)}})
	waitFor(t, "session end", func() bool {
		_, err := v.Queue("mqtt-subscription-zeroqos1")
		return err != nil && v.SessionState().Get(sessionRecordKey("zero")) == nil
	})
}
