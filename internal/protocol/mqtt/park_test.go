//go:build linux

package mqtt

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// parkAfter is short, so that connections park between the test's steps.
const parkAfter = 20 * time.Millisecond

func (e *testEnv) waitParked(n int) {
	e.t.Helper()
	waitFor(e.t, "parked connections", func() bool { return e.h.poller.Parked() == n })
}

// deliverParked publishes three QoS 1 messages to topic, each while the
// subscriber c (and the publisher) are parked, and checks that c gets and
// acks each and answers a ping after it.
func (e *testEnv) deliverParked(c *rawClient, topic string) {
	e.t.Helper()
	pub := e.raw("publisher", packet.V311)
	for i := range 3 {
		e.waitParked(2)
		pub.send(&packet.Publish{Topic: topic, QoS: 1, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
		pub.expectAck(packet.PUBACK, uint16(i+1), 0)
		p, ok := c.read().(*packet.Publish)
		if !ok || p.Payload[0] != byte(i) || p.QoS != 1 {
			e.t.Fatalf("delivery %d: %#v", i, p)
		}
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		e.waitParked(2)
		c.pingPong()
	}
}

// A parked connection is served again by its next bytes: a subscribe, a
// publish delivered to it and a ping all work across parks.
func TestParkedConnectionResumes(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	c := e.raw("parked", packet.V311)
	e.waitParked(1)
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "park/#", QoS: 1}}})
	if p := c.read(); p.Type() != packet.SUBACK {
		t.Fatalf("got %#v, want SUBACK", p)
	}
	e.waitParked(1)
	e.deliverParked(c, "park/x")
}

// The keep-alive still applies to a parked connection: silent past 1.5
// times it, the connection is closed and its will published.
func TestParkedConnectionKeepAliveExpires(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	w, _ := e.v5(&paho.Connect{ClientID: "ka-watch", CleanStart: true})
	w.sub(t, paho.SubscribeOptions{Topic: "ka/will"})
	nc := e.v5dial(e.addr)
	defer nc.Close()
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanStart: true, KeepAlive: 1, ClientID: "ka",
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest"),
		Will: &packet.Will{Topic: "ka/will", Payload: []byte("timeout")}}
	nc.Write(cp.Encode(nil, 4))
	start := time.Now()
	waitFor(t, "ka parked", func() bool { return e.h.poller.Parked() >= 1 })
	if m := w.next(t); string(m.Payload) != "timeout" {
		t.Fatalf("will %q", m.Payload)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("closed after %v, before 1.5x keep-alive", d)
	}
	waitFor(t, "ka gone", func() bool { return e.h.ConnectionCount() == 1 })
}

// A parked connection closed from elsewhere (a takeover, a shutdown) is
// woken and torn down: its writer closes the socket and wakes it.
func TestParkedConnectionTakeoverAndShutdown(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	first, _ := e.v5(&paho.Connect{ClientID: "same", CleanStart: true})
	e.waitParked(1)
	second, _ := e.v5(&paho.Connect{ClientID: "same", CleanStart: true})
	select {
	case d := <-first.disc:
		if d.ReasonCode != byte(packet.SessionTakenOver) {
			t.Fatalf("takeover disconnect 0x%x", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("parked connection not taken over")
	}
	e.waitParked(1) // the second one
	e.cancel()
	select {
	case d := <-second.disc:
		if d.ReasonCode != byte(packet.ServerShuttingDown) {
			t.Fatalf("shutdown disconnect 0x%x", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT 0x8B on shutdown")
	}
	waitFor(t, "all gone", func() bool { return e.h.ConnectionCount() == 0 && e.h.poller.Parked() == 0 })
}

// A packet that arrives slowly is not cut by the park deadline.
func TestParkDeadlineDoesNotCutAPacket(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	c := e.raw("slow", packet.V311)
	b := (&packet.Publish{Topic: "slow/x", Payload: make([]byte, 1000)}).Encode(nil, packet.V311)
	c.nc.Write(b[:10])
	time.Sleep(3 * parkAfter) // past the park deadline, mid-packet
	c.nc.Write(b[10:])
	c.pingPong()
}
