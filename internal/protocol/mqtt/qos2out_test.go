package mqtt

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Outbound QoS 2 (broker -> subscriber): the packet id of a delivery the
// subscriber PUBRECed stays in use, and in the client's Receive Maximum
// window, until PUBCOMP; a persistent session keeps it and sends PUBREL
// again, with the same id, when it resumes.

// rawSession connects a hand-driven client (rawClient: paho always finishes
// a QoS 2 flow, these tests stop between PUBREC and PUBCOMP) with the
// given Clean Start and CONNECT properties.
func (e *testEnv) rawSession(version byte, id string, clean bool, props packet.Properties) (*rawClient, *packet.Connack) {
	e.t.Helper()
	nc := e.v5dial(e.addr)
	e.t.Cleanup(func() { nc.Close() })
	c := &rawClient{t: e.t, nc: nc, r: bufio.NewReader(nc), version: version}
	c.send(&packet.Connect{ProtocolName: "MQTT", ProtocolLevel: version, CleanStart: clean, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest"), Properties: props})
	ack, ok := c.read().(*packet.Connack)
	if !ok || ack.ReasonCode != 0 {
		e.t.Fatalf("connack %#v", ack)
	}
	return c, ack
}

func (c *rawClient) publish() *packet.Publish {
	c.t.Helper()
	p, ok := c.read().(*packet.Publish)
	if !ok {
		c.t.Fatalf("got %#v, want PUBLISH", p)
	}
	return p
}

func (c *rawClient) subscribe(filter string, qos byte) {
	c.t.Helper()
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: filter, QoS: qos}}})
	if p := c.read(); p.Type() != packet.SUBACK {
		c.t.Fatalf("got %#v, want SUBACK", p)
	}
}

// receive reads a QoS 2 PUBLISH and answers PUBREC; the PUBREL follows.
func (c *rawClient) receive(payload string) uint16 {
	c.t.Helper()
	p := c.publish()
	if p.QoS != 2 || string(p.Payload) != payload {
		c.t.Fatalf("got %q at QoS %d, want %q at QoS 2", p.Payload, p.QoS, payload)
	}
	c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	c.expectAck(packet.PUBREL, p.PacketID, 0)
	return p.PacketID
}

// nothingFor checks that no packet arrives for d: an absence only the
// clock can show.
func (c *rawClient) nothingFor(d time.Duration) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(d))
	if p, err := packet.Read(c.r, c.version, 0); err == nil {
		c.t.Fatalf("unexpected %#v", p)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal(err)
	}
}

// pubcompPending is what the session (in memory, and its record when
// persistent) lists as awaiting PUBCOMP.
func (e *testEnv) pubcompPending(id string) (mem, rec []uint16) {
	e.h.mu.Lock()
	s := e.h.sessions["/\x00"+id]
	e.h.mu.Unlock()
	if s != nil {
		s.mu.Lock()
		mem = slices.Clone(s.pubcomp)
		s.mu.Unlock()
	}
	if r, ok := loadSessionRecord(e.b.VHost("/"), id); ok {
		rec = r.AwaitingPubcomp
	}
	return mem, rec
}

// TestOutboundQoS2HoldsIDAndWindowUntilPubcomp: after PUBREC the packet id
// is not handed out again until PUBCOMP [MQTT-2.2.1-3], and the flow keeps
// its place in the client's Receive Maximum [MQTT-4.9.0-2]; a PUBCOMP for
// an unknown id is ignored.
func TestOutboundQoS2HoldsIDAndWindowUntilPubcomp(t *testing.T) {
	e := startEnv(t, Config{})
	sub, _ := e.rawSession(packet.V5, "o2-sub", true, packet.Properties{ReceiveMaximum: 2})
	sub.subscribe("o2/t", 2)
	pub, _ := e.v5(&paho.Connect{ClientID: "o2-pub", CleanStart: true})
	send := func(payload string) {
		t.Helper()
		pub.pub(t, &paho.Publish{Topic: "o2/t", QoS: 2, Payload: []byte(payload)})
	}
	send("held")
	held := sub.receive("held") // no PUBCOMP yet

	send("m1")
	send("m2")
	p1 := sub.publish()
	if string(p1.Payload) != "m1" || p1.PacketID == held {
		t.Fatalf("got %q with id %d (held: %d)", p1.Payload, p1.PacketID, held)
	}
	// held (awaiting PUBCOMP) and m1 fill the window of 2: m2 waits.
	sub.nothingFor(200 * time.Millisecond)
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p1.PacketID})
	sub.expectAck(packet.PUBREL, p1.PacketID, 0)
	sub.nothingFor(200 * time.Millisecond) // m1 awaits its PUBCOMP too
	sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p1.PacketID})

	// Many more flows, enough for the ids to wrap: never the held one.
	sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: 999}) // unknown: ignored
	next := "m2"
	for i := range 40 {
		p := sub.publish()
		if string(p.Payload) != next || p.PacketID == held {
			t.Fatalf("flow %d: got %q with id %d (held: %d)", i, p.Payload, p.PacketID, held)
		}
		next = fmt.Sprint("n", i)
		send(next)
		sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
		sub.expectAck(packet.PUBREL, p.PacketID, 0)
		sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	}
	sub.publish()
	if mem, _ := e.pubcompPending("o2-sub"); !slices.Equal(mem, []uint16{held}) {
		t.Fatalf("session awaits PUBCOMP for %v, want [%d]", mem, held)
	}
	// A PUBREC again for the held id gets its PUBREL again.
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: held})
	sub.expectAck(packet.PUBREL, held, 0)
	sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: held})
	waitFor(t, "the held flow to complete", func() bool {
		mem, _ := e.pubcompPending("o2-sub")
		return len(mem) == 0
	})
}

// TestOutboundPubrelResentOnReconnect: a persistent session that went away
// between PUBREC and PUBCOMP gets PUBREL again when it resumes, first, with
// the original ids, in the order of its PUBRECs [MQTT-4.4.0-1,
// MQTT-4.6.0-3]; the messages themselves are not delivered again, and the
// ids stay reserved until PUBCOMP. Both protocol versions.
func TestOutboundPubrelResentOnReconnect(t *testing.T) {
	for _, version := range []byte{packet.V311, packet.V5} {
		t.Run(fmt.Sprint("v", version), func(t *testing.T) {
			e := startEnv(t, Config{})
			id := fmt.Sprint("rel-", version)
			var props packet.Properties
			if version == packet.V5 {
				props.SessionExpiry = packet.Ptr[uint32](600)
			}
			sub, _ := e.rawSession(version, id, false, props)
			sub.subscribe("rel/t", 2)
			pub := e.v3("rel-pub-"+id, true)
			wait(t, pub.Publish("rel/t", 2, false, "a"))
			wait(t, pub.Publish("rel/t", 2, false, "b"))
			a, b := sub.publish(), sub.publish()
			// PUBREC b before a: the PUBRELs come again in that order.
			for _, p := range []*packet.Publish{b, a} {
				sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				sub.expectAck(packet.PUBREL, p.PacketID, 0)
			}
			want := []uint16{b.PacketID, a.PacketID}
			if mem, rec := e.pubcompPending(id); !slices.Equal(mem, want) || !slices.Equal(rec, want) {
				t.Fatalf("awaiting PUBCOMP: session %v, record %v; want %v", mem, rec, want)
			}
			sub.nc.Close()

			sub, ack := e.rawSession(version, id, false, props)
			if !ack.SessionPresent {
				t.Fatal("session not resumed")
			}
			sub.expectAck(packet.PUBREL, b.PacketID, 0)
			sub.expectAck(packet.PUBREL, a.PacketID, 0)
			// New messages: not a or b again, and not under their ids.
			for i := range 10 {
				wait(t, pub.Publish("rel/t", 2, false, fmt.Sprint("c", i)))
				p := sub.publish()
				if string(p.Payload) != fmt.Sprint("c", i) || p.PacketID == a.PacketID || p.PacketID == b.PacketID {
					t.Fatalf("got %q with id %d (reserved: %v)", p.Payload, p.PacketID, want)
				}
				sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				sub.expectAck(packet.PUBREL, p.PacketID, 0)
				sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			}
			sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: b.PacketID})
			sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: a.PacketID})
			waitFor(t, "the session to forget the completed flows", func() bool {
				mem, rec := e.pubcompPending(id)
				return len(mem) == 0 && len(rec) == 0
			})
		})
	}
}

// TestOutboundPubrelCleanSessionDrops: a clean start discards the flows
// awaiting PUBCOMP with the rest of the session.
func TestOutboundPubrelCleanSessionDrops(t *testing.T) {
	e := startEnv(t, Config{})
	props := packet.Properties{SessionExpiry: packet.Ptr[uint32](600)}
	sub, _ := e.rawSession(packet.V5, "rel-clean", false, props)
	sub.subscribe("relc/t", 2)
	pub := e.v3("relc-pub", true)
	wait(t, pub.Publish("relc/t", 2, false, "x"))
	sub.receive("x")
	sub.nc.Close()

	sub, ack := e.rawSession(packet.V5, "rel-clean", true, props)
	if ack.SessionPresent {
		t.Fatal("clean start resumed the session")
	}
	// No PUBREL before the SUBACK: the first packet answers our SUBSCRIBE.
	sub.subscribe("relc/t", 2)
	if mem, rec := e.pubcompPending("rel-clean"); len(mem) != 0 || len(rec) != 0 {
		t.Fatalf("awaiting PUBCOMP after a clean start: session %v, record %v", mem, rec)
	}
	wait(t, pub.Publish("relc/t", 2, false, "y"))
	if p := sub.publish(); string(p.Payload) != "y" {
		t.Fatalf("got %q, want y (x was received before)", p.Payload)
	}
}

// TestOutboundPubrelCompletedByPaho: real clients resuming the session
// answer the resent PUBREL with PUBCOMP, which ends the flow.
func TestOutboundPubrelCompletedByPaho(t *testing.T) {
	e := startEnv(t, Config{})
	expiry := packet.Ptr[uint32](600)
	leave := func(id string) {
		t.Helper()
		sub, _ := e.rawSession(packet.V5, id, false, packet.Properties{SessionExpiry: expiry})
		sub.subscribe("relp/"+id, 2)
		pub := e.v3(id+"-pub", true)
		wait(t, pub.Publish("relp/"+id, 2, false, "x"))
		held := sub.receive("x")
		if mem, _ := e.pubcompPending(id); !slices.Equal(mem, []uint16{held}) {
			t.Fatalf("awaiting PUBCOMP: %v, want [%d]", mem, held)
		}
		sub.nc.Close()
	}
	done := func(id string) {
		t.Helper()
		waitFor(t, id+"'s PUBCOMP", func() bool {
			mem, rec := e.pubcompPending(id)
			return len(mem) == 0 && len(rec) == 0
		})
	}

	leave("relp-v5")
	c, ca := e.v5(&paho.Connect{ClientID: "relp-v5", Properties: &paho.ConnectProperties{SessionExpiryInterval: expiry}})
	if !ca.SessionPresent {
		t.Fatal("v5 session not resumed")
	}
	done("relp-v5")
	c.none(t, "probe/relp-v5")

	leave("relp-v3")
	got := make(chan pahov3.Message, 10)
	v3 := e.v3("relp-v3", false, func(o *pahov3.ClientOptions) {
		o.SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { got <- m })
	})
	done("relp-v3")
	// Through the same session queue, after anything delivered again.
	wait(t, v3.Subscribe("probe/relp-v3", 1, nil))
	wait(t, e.v3("relp-v3-probe", true).Publish("probe/relp-v3", 1, false, "probe"))
	select {
	case m := <-got:
		if m.Topic() != "probe/relp-v3" {
			t.Fatalf("message delivered again: %q on %q", m.Payload(), m.Topic())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no probe")
	}
}

// TestOutboxIDs: packet ids are handed out in turn within a table that
// grows only when full, so a window of in-order acknowledgements keeps it
// small; released and reserved ids are skipped.
func TestOutboxIDs(t *testing.T) {
	o := &outbox{c: &conn{limiter: broker.NewLimiter(0)}}
	alloc := func() uint16 {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.allocIDLocked(inflight{})
	}
	var acks ackBatch
	// A window of 100, acknowledged in order, for a long while.
	var window []uint16
	for range 20000 {
		if len(window) == 100 {
			o.settle(window[0], &acks)
			window = window[1:]
		}
		id := alloc()
		if id == 0 || slices.Contains(window, id) {
			t.Fatalf("id %d handed out while in flight", id)
		}
		window = append(window, id)
	}
	if len(o.ids) > 200 {
		t.Fatalf("table of %d ids for a window of 100", len(o.ids))
	}
	for _, id := range window {
		o.settle(id, &acks)
	}
	if o.idsUsed != 0 {
		t.Fatalf("%d ids in use after every one was settled", o.idsUsed)
	}

	// A released id (PUBREC) is skipped until PUBCOMP; a reserved one too.
	o = &outbox{c: &conn{limiter: broker.NewLimiter(0)}}
	o.reserve([]uint16{3})
	first := alloc()
	if _, res := o.received(first); res != pubrecReceived {
		t.Fatalf("PUBREC for %d: %v", first, res)
	}
	if _, res := o.received(first); res != pubrecAgain {
		t.Fatalf("second PUBREC for %d: %v", first, res)
	}
	o.settle(first, &acks) // a PUBACK does not free a released id
	for range 100 {
		id := alloc()
		if id == first || id == 3 {
			t.Fatalf("released id %d handed out again", id)
		}
		o.settle(id, &acks)
	}
	if !o.complete(first) || o.complete(first) || !o.complete(3) {
		t.Fatal("PUBCOMP of released ids")
	}
	if o.idsUsed != 0 {
		t.Fatalf("%d ids in use", o.idsUsed)
	}
	if len(o.ids) > 8 {
		t.Fatalf("table of %d ids for at most 3 in flight", len(o.ids))
	}
}

// TestOutboundPubrelWaitsForDisk: for a persistent session, the PUBREL
// goes out once the record listing its id (and the queue's ack of the
// message) is on disk, so that a crash after it loses neither.
func TestOutboundPubrelWaitsForDisk(t *testing.T) {
	e, fs := diskEnv(t)
	props := packet.Properties{SessionExpiry: packet.Ptr[uint32](600)}
	sub, _ := e.rawSession(packet.V5, "reldisk", false, props)
	sub.subscribe("reldisk/t", 2)
	pub := e.v3("reldisk-pub", true)
	wait(t, pub.Publish("reldisk/t", 2, false, "x"))
	p := sub.publish()
	release := fs.HoldSyncs()
	t.Cleanup(release)
	sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
	sub.pingPong() // the PUBREC was handled; no PUBREL yet
	if _, rec := e.pubcompPending("reldisk"); !slices.Equal(rec, []uint16{p.PacketID}) {
		t.Fatalf("record awaits PUBCOMP for %v, want [%d]", rec, p.PacketID)
	}
	release()
	sub.expectAck(packet.PUBREL, p.PacketID, 0)
	q, _ := e.b.VHost(broker.DefaultVHost).Queue(sessionQueueName("reldisk", true))
	if st := q.Stats(); st.Ready != 0 || st.Unacked != 0 {
		t.Fatalf("session queue: %+v, want the message settled", st)
	}
}

// TestUnacknowledgedResentWithOriginalIDs: PUBLISHes a persistent session's
// previous connection did not get acknowledged (no PUBACK, no PUBREC) come
// again on reconnect with DUP and their original packet ids
// [MQTT-4.4.0-1], so that a QoS 2 receiver recognises the ones it has.
func TestUnacknowledgedResentWithOriginalIDs(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprint("qos", qos), func(t *testing.T) {
			e := startEnv(t, Config{})
			id := fmt.Sprint("orig-", qos)
			sub, _ := e.rawSession(packet.V311, id, false, packet.Properties{})
			sub.subscribe("orig/t", qos)
			pub := e.v3("orig-pub-"+id, true)
			settle := func(p *packet.Publish) {
				if qos == 1 {
					sub.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID})
					return
				}
				sub.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
				sub.expectAck(packet.PUBREL, p.PacketID, 0)
				sub.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
			}
			// Two settled first, so the unsettled ids are not simply 1, 2, 3.
			for i := range 2 {
				wait(t, pub.Publish("orig/t", qos, false, fmt.Sprint("done", i)))
				settle(sub.publish())
			}
			var ids []uint16
			for i := range 3 {
				wait(t, pub.Publish("orig/t", qos, false, fmt.Sprint("open", i)))
				ids = append(ids, sub.publish().PacketID)
			}
			// The settling acks are handled before the socket closes: the
			// reconnect takes the session over and ends the old connection
			// at once, and an ack it had not read yet is as good as lost
			// (its delivery would come again, rightly).
			sub.pingPong()
			sub.nc.Close()

			sub, ack := e.rawSession(packet.V311, id, false, packet.Properties{})
			if !ack.SessionPresent {
				t.Fatal("session not resumed")
			}
			var resent []*packet.Publish
			for i, want := range ids {
				p := sub.publish()
				if string(p.Payload) != fmt.Sprint("open", i) || !p.Dup || p.PacketID != want {
					t.Fatalf("resent %q dup %v id %d; want %q dup true id %d", p.Payload, p.Dup, p.PacketID, fmt.Sprint("open", i), want)
				}
				resent = append(resent, p)
			}
			for _, p := range resent {
				settle(p)
			}
			wait(t, pub.Publish("orig/t", qos, false, "next"))
			if p := sub.publish(); string(p.Payload) != "next" || p.Dup {
				t.Fatalf("got %q dup %v, want next", p.Payload, p.Dup)
			}
		})
	}
}
