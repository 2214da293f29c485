//go:build linux

package mqtt

import (
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// TestParkedConnectionRetiresOutbox: an outbox left with nothing in it is
// dropped as the connection parks, and a new one serves what comes next:
// a ping, and QoS 0 and QoS 1 deliveries. A delivery to a parked
// connection makes one that stays until the connection reads its next
// packet and parks again; a QoS 1 delivery in flight keeps it until its
// PUBACK.
func TestParkedConnectionRetiresOutbox(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	c := e.raw("retire", packet.V311)
	conn := e.conn("retire")
	hasOutbox := func() bool { return conn.outp.Load() != nil }
	c.pingPong()
	waitFor(t, "outbox retired after a ping", func() bool { return !hasOutbox() })
	c.subscribe("retire/#", 1)
	waitFor(t, "outbox retired after SUBACK", func() bool { return !hasOutbox() })
	pub := e.raw("retire-pub", packet.V311)
	for i, qos := range []byte{0, 1, 0, 1} {
		e.waitParked(2)
		pub.send(&packet.Publish{Topic: "retire/x", QoS: qos, PacketID: uint16(i + 1), Payload: []byte{byte(i)}})
		if qos == 1 {
			pub.expectAck(packet.PUBACK, uint16(i+1), 0)
		}
		p, ok := c.read().(*packet.Publish)
		if !ok || p.Payload[0] != byte(i) || p.QoS != qos {
			t.Fatalf("delivery %d: %#v", i, p)
		}
		c.pingPong()
		e.waitParked(2)
		if qos == 1 {
			if !hasOutbox() {
				t.Fatal("outbox retired with a QoS 1 delivery in flight")
			}
			c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
		}
		waitFor(t, "outbox retired after a delivery", func() bool { return !hasOutbox() })
	}
	c.pingPong()
}

// TestInlineWriteRenewsWriteDeadline: a delivery written inline (from the
// publisher's goroutine, to a parked subscriber whose outbox was dropped)
// renews the socket's write deadline; left to writer goroutines, it ran
// out under a subscriber served only inline, whose next delivery then
// failed unwritten and was handed to a goroutine.
func TestInlineWriteRenewsWriteDeadline(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	c := e.raw("wd", packet.V311)
	conn := e.conn("wd")
	c.subscribe("wd/#", 0)
	waitFor(t, "outbox retired after SUBACK", func() bool { return conn.outp.Load() == nil })
	pub := e.raw("wd-pub", packet.V311)
	pub.send(&packet.Publish{Topic: "wd/x", Payload: []byte("x")})
	if p, ok := c.read().(*packet.Publish); !ok || string(p.Payload) != "x" {
		t.Fatalf("got %#v", p)
	}
	o := conn.outp.Load()
	if o == nil {
		t.Fatal("no outbox after a delivery")
	}
	var deadline time.Time
	waitFor(t, "the write finished", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		deadline = o.writeDeadline // the writer's, read while none runs
		return !o.running
	})
	if left := time.Until(deadline); left < e.h.cfg.WriteTimeout {
		t.Fatalf("write deadline %v ahead after an inline write, want at least %v", left, e.h.cfg.WriteTimeout)
	}
}
