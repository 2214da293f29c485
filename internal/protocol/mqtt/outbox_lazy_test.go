package mqtt

import (
	"testing"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// TestIdleConnectionHasNoOutbox: a connection that has been sent nothing
// but its CONNACK holds no outbox (what an idle connection costs); the
// first packet it is sent makes one.
func TestIdleConnectionHasNoOutbox(t *testing.T) {
	e := startEnv(t, Config{})
	nc, r, _ := e.rawV5("lazy-out", packet.Properties{})
	c := e.conn("lazy-out")
	if c == nil {
		t.Fatal("connection not registered")
	}
	if c.outp.Load() != nil {
		t.Fatal("an idle connection holds an outbox")
	}
	nc.Write((&packet.Pingreq{}).Encode(nil, 5))
	if p, err := packet.Read(r, 5, 0); err != nil || p.Type() != packet.PINGRESP {
		t.Fatalf("pingresp %#v %v", p, err)
	}
	if c.outp.Load() == nil {
		t.Fatal("no outbox after a PINGRESP")
	}
}
