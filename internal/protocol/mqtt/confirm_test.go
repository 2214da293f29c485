package mqtt

import (
	"bufio"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
	"github.com/heraldmq/herald/internal/store"
)

// diskEnv is a test environment whose broker keeps a message log on an
// in-memory file system (so a test can hold its fsyncs), with a durable
// queue bound to amq.topic for "durable/#".
func diskEnv(t *testing.T) (*testEnv, *store.MemFS) {
	t.Helper()
	fs := store.NewMemFS()
	st, _, err := store.Open("/data/log", store.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the env's cleanup
	e := startEnvOn(t, Config{}, st)
	v := e.b.VHost(broker.DefaultVHost)
	if _, err := v.DeclareQueue("keep", broker.QueueOptions{Durable: true}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("keep", topicExchange, "durable.#", nil, 0); err != nil {
		t.Fatal(err)
	}
	return e, fs
}

// rawClient is a hand-driven MQTT client of either version.
type rawClient struct {
	t       *testing.T
	nc      net.Conn
	r       *bufio.Reader
	version byte
}

func (e *testEnv) raw(id string, version byte) *rawClient {
	e.t.Helper()
	nc := e.v5dial(e.addr)
	e.t.Cleanup(func() { nc.Close() })
	c := &rawClient{t: e.t, nc: nc, r: bufio.NewReader(nc), version: version}
	c.send(&packet.Connect{ProtocolName: "MQTT", ProtocolLevel: version, CleanStart: true, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest")})
	if ack, ok := c.read().(*packet.Connack); !ok || ack.ReasonCode != 0 {
		e.t.Fatalf("connack %#v", ack)
	}
	return c
}

func (c *rawClient) send(p packet.Packet) {
	c.t.Helper()
	if _, err := c.nc.Write(p.Encode(nil, c.version)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) read() packet.Packet {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := packet.Read(c.r, c.version, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *rawClient) expectAck(kind byte, id uint16, code packet.ReasonCode) {
	c.t.Helper()
	p := c.read()
	a, ok := p.(*packet.Ack)
	if !ok || a.Kind != kind || a.PacketID != id || a.ReasonCode != code {
		c.t.Fatalf("got %#v, want ack kind %d id %d reason 0x%02x", p, kind, id, byte(code))
	}
}

// pingPong sends PINGREQ and expects PINGRESP next: everything sent before
// it has been handled, and no answer held back for the disk overtook it.
func (c *rawClient) pingPong() {
	c.t.Helper()
	c.send(&packet.Pingreq{})
	if p := c.read(); p.Type() != packet.PINGRESP {
		c.t.Fatalf("got %#v before PINGRESP", p)
	}
}

// TestPubackWaitsForDisk: the PUBACK/PUBREC of a persistent message that a
// durable queue took goes out once the log has fsynced it; answers that
// need no disk go at once when nothing is waiting, and otherwise keep the
// order of the PUBLISHes [MQTT-4.6.0-2, -3], v5 refusals with their
// reason codes included.
func TestPubackWaitsForDisk(t *testing.T) {
	for _, version := range []byte{packet.V311, packet.V5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			e, fs := diskEnv(t)
			c := e.raw("pw", version)
			release := fs.HoldSyncs()
			t.Cleanup(release)
			none := packet.ReasonCode(0)
			if version == packet.V5 {
				none = packet.NoMatchingSubscribers
			}
			// Nothing waiting and nothing to store: at once, disk or not.
			c.send(&packet.Publish{QoS: 1, PacketID: 1, Topic: "other/x", Payload: []byte("a")})
			c.expectAck(packet.PUBACK, 1, none)

			c.send(&packet.Publish{QoS: 1, PacketID: 2, Topic: "durable/a", Payload: []byte("b")})
			c.send(&packet.Publish{QoS: 1, PacketID: 3, Topic: "other/x", Payload: []byte("c")})
			c.send(&packet.Publish{QoS: 0, Topic: "durable/q0", Payload: []byte("d")})
			if version == packet.V5 {
				c.send(&packet.Publish{QoS: 1, PacketID: 4, Topic: "durable/bad", Payload: []byte{0xff},
					Properties: packet.Properties{PayloadFormat: packet.Ptr[byte](1)}})
			}
			c.send(&packet.Publish{QoS: 2, PacketID: 5, Topic: "durable/b", Payload: []byte("e")})
			c.pingPong() // all read and routed; no answer yet
			release()
			c.expectAck(packet.PUBACK, 2, 0)
			c.expectAck(packet.PUBACK, 3, none)
			if version == packet.V5 {
				c.expectAck(packet.PUBACK, 4, packet.PayloadFormatInvalid)
			}
			c.expectAck(packet.PUBREC, 5, 0)
			c.send(&packet.Ack{Kind: packet.PUBREL, PacketID: 5})
			c.expectAck(packet.PUBCOMP, 5, 0)
			q, _ := e.b.VHost(broker.DefaultVHost).Queue("keep")
			if n := q.Stats().Ready; n != 3 {
				t.Fatalf("durable queue holds %d messages, want 3", n)
			}
		})
	}
}

// TestPubacksShareGroupCommit: a client's pipelined QoS 1 publishes are
// not answered one fsync each; those read while an fsync is in flight
// share the next one, and their PUBACKs come in order.
func TestPubacksShareGroupCommit(t *testing.T) {
	e, fs := diskEnv(t)
	c := e.raw("gc", packet.V311)
	syncs := fs.SyncCount()
	release := fs.HoldSyncs()
	t.Cleanup(release)
	const n = 200
	for i := range n {
		c.send(&packet.Publish{QoS: 1, PacketID: uint16(i + 1), Topic: "durable/gc", Payload: []byte(fmt.Sprint(i))})
	}
	c.pingPong()
	release()
	for i := range n {
		c.expectAck(packet.PUBACK, uint16(i+1), 0)
	}
	if d := fs.SyncCount() - syncs; d > 2 {
		t.Fatalf("%d PUBACKs took %d fsyncs, want at most 2", n, d)
	}
}

// TestPubrecOfResentPublishWaitsForDisk: a QoS 2 PUBLISH resent while the
// first copy's PUBREC still waits for the disk is not answered before it.
func TestPubrecOfResentPublishWaitsForDisk(t *testing.T) {
	e, fs := diskEnv(t)
	c := e.raw("dup", packet.V5)
	release := fs.HoldSyncs()
	t.Cleanup(release)
	c.send(&packet.Publish{QoS: 2, PacketID: 9, Topic: "durable/d", Payload: []byte("x")})
	c.send(&packet.Publish{QoS: 2, Dup: true, PacketID: 9, Topic: "durable/d", Payload: []byte("x")})
	c.pingPong()
	release()
	c.expectAck(packet.PUBREC, 9, 0)
	c.expectAck(packet.PUBREC, 9, 0)
	q, _ := e.b.VHost(broker.DefaultVHost).Queue("keep")
	if n := q.Stats().Ready; n != 1 {
		t.Fatalf("durable queue holds %d messages, want 1 (the resend is not routed again)", n)
	}
}
