package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// MQTT state across a broker restart: retained messages, persistent
// sessions with their subscription options, session expiry, and the
// server's Receive Maximum. Each test restarts a real server on the same
// data directory (in-process for a clean shutdown, the binary for kill -9).

// mqttSrv is an in-process server with MQTT (and AMQP) listening on dir.
type mqttSrv struct {
	*app.App
	t    *testing.T
	once sync.Once
}

func mqttServer(t *testing.T, dir string, configure ...func(*app.Config)) *mqttSrv {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("HERALD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	cfg := app.Config{MQTTAddr: "127.0.0.1:0", AMQPAddr: "127.0.0.1:0", DataDir: dir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	for _, f := range configure {
		f(&cfg)
	}
	srv, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	s := &mqttSrv{App: srv, t: t}
	t.Cleanup(s.stop)
	return s
}

// stop shuts the server down cleanly (once).
func (s *mqttSrv) stop() { s.once.Do(func() { stopServer(s.t, s.App) }) }

// mqttV3Client connects a paho.mqtt.golang (3.1.1) client; messages on its
// subscriptions (and any not matched by one) go to msgs.
type mqttV3Client struct {
	mqtt.Client
	msgs    chan mqtt.Message
	present bool
}

func dialMQTTV3(t *testing.T, addr, id string, clean bool) *mqttV3Client {
	t.Helper()
	c := &mqttV3Client{msgs: make(chan mqtt.Message, 100)}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername("guest").SetPassword("guest").
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { c.msgs <- m })
	c.Client = mqtt.NewClient(o)
	tok := c.Connect()
	waitMQTTToken(t, tok)
	c.present = tok.(*mqtt.ConnectToken).SessionPresent()
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func waitMQTTToken(t *testing.T, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(waitTimeout) {
		t.Fatal("mqtt token timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

func (c *mqttV3Client) next(t *testing.T) mqtt.Message {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no MQTT message")
	}
	panic("unreachable")
}

// mqttV5Client is a paho.golang (MQTT 5) client with its received messages.
type mqttV5Client struct {
	*paho.Client
	msgs chan *paho.Publish
}

func dialMQTTV5(t *testing.T, addr string, cp *paho.Connect) (*mqttV5Client, *paho.Connack) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqttV5Client{msgs: make(chan *paho.Publish, 100)}
	c.Client = paho.NewClient(paho.ClientConfig{Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}}})
	cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = "guest", true, []byte("guest"), true
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	t.Cleanup(func() {
		_ = c.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-c.Done()
	})
	if err != nil {
		t.Fatalf("v5 connect %s: %v", cp.ClientID, err)
	}
	return c, ca
}

func mqttCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func (c *mqttV5Client) subscribe(t *testing.T, id int, opts ...paho.SubscribeOptions) {
	t.Helper()
	s := &paho.Subscribe{Subscriptions: opts}
	if id != 0 {
		s.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
	}
	sa, err := c.Subscribe(mqttCtx(t), s)
	if err != nil {
		t.Fatalf("subscribe %+v: %v", opts, err)
	}
	for i, r := range sa.Reasons {
		if r >= 0x80 {
			t.Fatalf("subscribe %q refused: 0x%02x", opts[i].Topic, r)
		}
	}
}

func (c *mqttV5Client) publish(t *testing.T, p *paho.Publish) {
	t.Helper()
	if _, err := c.Publish(mqttCtx(t), p); err != nil {
		t.Fatalf("publish %q: %v", p.Topic, err)
	}
}

func (c *mqttV5Client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no MQTT 5 message")
	}
	panic("unreachable")
}

// nothingBut subscribes to a probe topic, publishes on it and checks that
// the probe is the next message: everything the server had to send before
// it (retained messages of earlier subscriptions, deliveries of earlier
// publishes) would have come first.
func (c *mqttV5Client) nothingBut(t *testing.T, probe string) {
	t.Helper()
	c.subscribe(t, 0, paho.SubscribeOptions{Topic: probe, QoS: 1})
	c.publish(t, &paho.Publish{Topic: probe, QoS: 1, Payload: []byte("probe")})
	if m := c.next(t); m.Topic != probe {
		t.Fatalf("unexpected message on %q: %q", m.Topic, m.Payload)
	}
}

func mqttSubID(p *paho.Publish) int {
	if p.Properties == nil || p.Properties.SubscriptionIdentifier == nil {
		return 0
	}
	return *p.Properties.SubscriptionIdentifier
}

// TestMQTTRetainedSurvivesRestart: retained messages (QoS 0 and 1) are
// stored per vhost and come back after a restart; one cleared with an
// empty payload stays cleared; a retained message replaced before the
// restart comes back as the replacement.
func TestMQTTRetainedSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := mqttServer(t, dir)
	pub := dialMQTTV3(t, srv.MQTTAddr().String(), "ret-pub", true)
	waitMQTTToken(t, pub.Publish("plant/temp", 1, true, "20"))
	waitMQTTToken(t, pub.Publish("plant/temp", 1, true, "21")) // replaces
	waitMQTTToken(t, pub.Publish("plant/door", 0, true, "open"))
	waitMQTTToken(t, pub.Publish("plant/gone", 1, true, "soon"))
	waitMQTTToken(t, pub.Publish("plant/gone", 1, true, "")) // clears
	pub.Disconnect(0)
	srv.stop()

	srv = mqttServer(t, dir)
	sub, _ := dialMQTTV5(t, srv.MQTTAddr().String(), &paho.Connect{ClientID: "ret-sub", CleanStart: true})
	sub.subscribe(t, 4, paho.SubscribeOptions{Topic: "plant/#", QoS: 1})
	got := map[string]*paho.Publish{}
	for range 2 {
		m := sub.next(t)
		got[m.Topic] = m
	}
	if m := got["plant/temp"]; m == nil || string(m.Payload) != "21" || !m.Retain || m.QoS != 1 || mqttSubID(m) != 4 {
		t.Fatalf("plant/temp after a restart: %+v", m)
	}
	if m := got["plant/door"]; m == nil || string(m.Payload) != "open" || !m.Retain || m.QoS != 0 {
		t.Fatalf("plant/door (retained at QoS 0) after a restart: %+v", m)
	}
	sub.nothingBut(t, "probe/ret1") // plant/gone stays cleared

	// Clear one more, restart again: only the door is left.
	sub.publish(t, &paho.Publish{Topic: "plant/temp", QoS: 1, Retain: true})
	if m := sub.next(t); m.Topic != "plant/temp" || len(m.Payload) != 0 {
		t.Fatalf("the clearing publish itself: %+v", m)
	}
	sub.Disconnect(&paho.Disconnect{})
	srv.stop()

	srv = mqttServer(t, dir)
	sub2, _ := dialMQTTV5(t, srv.MQTTAddr().String(), &paho.Connect{ClientID: "ret-sub2", CleanStart: true})
	sub2.subscribe(t, 0, paho.SubscribeOptions{Topic: "plant/+", QoS: 1})
	if m := sub2.next(t); m.Topic != "plant/door" || string(m.Payload) != "open" {
		t.Fatalf("after the second restart: %q %q", m.Topic, m.Payload)
	}
	sub2.nothingBut(t, "probe/ret2")
}

// TestMQTTPersistentSessionSurvivesRestart: an MQTT 5 persistent session
// keeps its subscriptions with their options (QoS granted, No Local,
// Retain As Published, subscription identifiers) across a restart:
// messages queued while the client was away and messages published after
// it came back are delivered as those options say.
func TestMQTTPersistentSessionSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := mqttServer(t, dir)
	addr := srv.MQTTAddr().String()
	expiry := uint32(3600)
	c, ca := dialMQTTV5(t, addr, &paho.Connect{ClientID: "ps-dev", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if ca.Properties == nil || ca.Properties.ReceiveMaximum == nil || *ca.Properties.ReceiveMaximum != 1024 {
		t.Fatalf("CONNACK Receive Maximum: %+v", ca.Properties)
	}
	c.subscribe(t, 7, paho.SubscribeOptions{Topic: "ps/#", QoS: 1, NoLocal: true})
	c.subscribe(t, 9, paho.SubscribeOptions{Topic: "ps2/+", QoS: 0})
	c.subscribe(t, 11, paho.SubscribeOptions{Topic: "psr/#", QoS: 1, RetainAsPublished: true, RetainHandling: 2})
	c.subscribe(t, 13, paho.SubscribeOptions{Topic: "$share/grp/pss/#", QoS: 1})
	c.Disconnect(&paho.Disconnect{})

	p, _ := dialMQTTV5(t, addr, &paho.Connect{ClientID: "ps-pub", CleanStart: true})
	p.publish(t, &paho.Publish{Topic: "ps/a", QoS: 1, Payload: []byte("offline-1")})
	p.publish(t, &paho.Publish{Topic: "ps2/b", QoS: 1, Payload: []byte("offline-2")})
	p.Disconnect(&paho.Disconnect{})
	srv.stop()

	srv = mqttServer(t, dir)
	addr = srv.MQTTAddr().String()
	c, ca = dialMQTTV5(t, addr, &paho.Connect{ClientID: "ps-dev", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if !ca.SessionPresent {
		t.Fatal("session present = false after a restart")
	}
	if m := c.next(t); m.Topic != "ps/a" || string(m.Payload) != "offline-1" || m.QoS != 1 || mqttSubID(m) != 7 {
		t.Fatalf("first offline message: topic %q %q QoS %d id %d", m.Topic, m.Payload, m.QoS, mqttSubID(m))
	}
	if m := c.next(t); m.Topic != "ps2/b" || string(m.Payload) != "offline-2" || m.QoS != 0 || mqttSubID(m) != 9 {
		t.Fatalf("second offline message (granted QoS 0): topic %q %q QoS %d id %d", m.Topic, m.Payload, m.QoS, mqttSubID(m))
	}

	// No Local still holds: our own publish on ps/ is not delivered to us,
	// so the next message is the other client's.
	c.publish(t, &paho.Publish{Topic: "ps/self", QoS: 1, Payload: []byte("mine")})
	p, _ = dialMQTTV5(t, addr, &paho.Connect{ClientID: "ps-pub", CleanStart: true})
	p.publish(t, &paho.Publish{Topic: "ps/b", QoS: 1, Payload: []byte("live")})
	if m := c.next(t); m.Topic != "ps/b" || string(m.Payload) != "live" || mqttSubID(m) != 7 {
		t.Fatalf("after reconnecting: topic %q %q id %d (No Local lost?)", m.Topic, m.Payload, mqttSubID(m))
	}
	// Retain As Published: a retained publish keeps its RETAIN flag.
	p.publish(t, &paho.Publish{Topic: "psr/x", QoS: 1, Retain: true, Payload: []byte("rap")})
	if m := c.next(t); m.Topic != "psr/x" || !m.Retain || mqttSubID(m) != 11 {
		t.Fatalf("retain as published: topic %q retain %v id %d", m.Topic, m.Retain, mqttSubID(m))
	}
	// The shared subscription is back too.
	p.publish(t, &paho.Publish{Topic: "pss/1", QoS: 1, Payload: []byte("shared")})
	if m := c.next(t); m.Topic != "pss/1" || mqttSubID(m) != 13 {
		t.Fatalf("shared subscription: topic %q id %d", m.Topic, mqttSubID(m))
	}
	c.nothingBut(t, "probe/ps")
}

// TestMQTTPersistentSessionV3SurvivesRestart: a 3.1.1 clean-session=0
// session gets the QoS 1 messages queued while it was away, after a
// restart, at the QoS it subscribed with.
func TestMQTTPersistentSessionV3SurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := mqttServer(t, dir)
	c := dialMQTTV3(t, srv.MQTTAddr().String(), "ps3-dev", false)
	waitMQTTToken(t, c.Subscribe("ps3/+/temp", 1, nil))
	waitMQTTToken(t, c.Subscribe("ps3/q0", 0, nil))
	c.Disconnect(100)
	p := dialMQTTV3(t, srv.MQTTAddr().String(), "ps3-pub", true)
	for i := range 3 {
		waitMQTTToken(t, p.Publish(fmt.Sprintf("ps3/%d/temp", i), 1, false, fmt.Sprint(i)))
	}
	waitMQTTToken(t, p.Publish("ps3/q0", 1, false, "downgraded"))
	p.Disconnect(0)
	srv.stop()

	srv = mqttServer(t, dir)
	c = dialMQTTV3(t, srv.MQTTAddr().String(), "ps3-dev", false)
	if !c.present {
		t.Fatal("session present = false after a restart")
	}
	for i := range 3 {
		if m := c.next(t); m.Topic() != fmt.Sprintf("ps3/%d/temp", i) || string(m.Payload()) != fmt.Sprint(i) || m.Qos() != 1 {
			t.Fatalf("offline message %d: %q %q QoS %d", i, m.Topic(), m.Payload(), m.Qos())
		}
	}
	if m := c.next(t); m.Topic() != "ps3/q0" || m.Qos() != 0 {
		t.Fatalf("QoS 0 subscription: %q QoS %d", m.Topic(), m.Qos())
	}
	// The subscription is still there for new messages.
	p = dialMQTTV3(t, srv.MQTTAddr().String(), "ps3-pub", true)
	waitMQTTToken(t, p.Publish("ps3/9/temp", 1, false, "live"))
	if m := c.next(t); string(m.Payload()) != "live" {
		t.Fatalf("live message %q", m.Payload())
	}
}

// TestMQTTSessionExpiryRunsWhileDown: a v5 session whose expiry interval
// passes while the broker is down is gone at the next start (its queue
// too); one with time left is still there.
func TestMQTTSessionExpiryRunsWhileDown(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := mqttServer(t, dir)
	addr := srv.MQTTAddr().String()
	short, long := uint32(1), uint32(3600)
	for id, exp := range map[string]*uint32{"exp-short": &short, "exp-long": &long} {
		c, _ := dialMQTTV5(t, addr, &paho.Connect{ClientID: id, CleanStart: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: exp}})
		c.subscribe(t, 0, paho.SubscribeOptions{Topic: "exp/" + id, QoS: 1})
		c.Disconnect(&paho.Disconnect{})
	}
	srv.stop()
	// The short session's interval must run out while nothing is running:
	// there is no event to wait for, only the clock.
	time.Sleep(1100 * time.Millisecond)

	srv = mqttServer(t, dir)
	v := srv.Broker().VHost("/")
	if _, err := v.Queue("mqtt-subscription-exp-shortqos1"); err == nil {
		t.Fatal("the expired session's queue is still there")
	}
	if _, err := v.Queue("mqtt-subscription-exp-longqos1"); err != nil {
		t.Fatalf("the live session's queue: %v", err)
	}
	_, ca := dialMQTTV5(t, srv.MQTTAddr().String(), &paho.Connect{ClientID: "exp-short", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &long}})
	if ca.SessionPresent {
		t.Fatal("an expired session was resumed")
	}
	_, ca = dialMQTTV5(t, srv.MQTTAddr().String(), &paho.Connect{ClientID: "exp-long", CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &long}})
	if !ca.SessionPresent {
		t.Fatal("a live session was not resumed")
	}
}

// rawMQTTConn is a hand-driven MQTT 5 connection, for what client libraries
// will not do (exceed the server's Receive Maximum, send a stray PUBREL).
type rawMQTTConn struct {
	nc net.Conn
	r  *bufio.Reader
}

func dialRawMQTT(t *testing.T, addr string, cp *packet.Connect) (*rawMQTTConn, *packet.Connack) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawMQTTConn{nc: nc, r: bufio.NewReader(nc)}
	cp.ProtocolName, cp.ProtocolLevel, cp.KeepAlive = "MQTT", 5, 30
	cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, "guest", true, []byte("guest")
	c.send(t, cp)
	ack, ok := c.read(t).(*packet.Connack)
	if !ok || ack.ReasonCode != 0 {
		t.Fatalf("connack %+v", ack)
	}
	return c, ack
}

func (c *rawMQTTConn) send(t *testing.T, p packet.Packet) {
	t.Helper()
	if _, err := c.nc.Write(p.Encode(nil, 5)); err != nil {
		t.Fatal(err)
	}
}

func (c *rawMQTTConn) read(t *testing.T) packet.Packet {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	p, err := packet.Read(c.r, 5, 0)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return p
}

func (c *rawMQTTConn) expectAck(t *testing.T, kind byte, id uint16) *packet.Ack {
	t.Helper()
	a, ok := c.read(t).(*packet.Ack)
	if !ok || a.Kind != kind || a.PacketID != id {
		t.Fatalf("got %#v, want ack kind %d for id %d", a, kind, id)
	}
	return a
}

// TestMQTTReceiveMaximumExceeded: the server advertises its Receive
// Maximum and disconnects (0x93) a client with more unacknowledged QoS 1/2
// publishes than that; a PUBREL frees a slot.
func TestMQTTReceiveMaximumExceeded(t *testing.T) {
	t.Parallel()
	srv := mqttServer(t, t.TempDir(), func(c *app.Config) { c.MQTT.ReceiveMaximum = 3 })
	addr := srv.MQTTAddr().String()
	c, ack := dialRawMQTT(t, addr, &packet.Connect{ClientID: "rm", CleanStart: true})
	if ack.Properties.ReceiveMaximum != 3 {
		t.Fatalf("CONNACK Receive Maximum %d, want 3", ack.Properties.ReceiveMaximum)
	}
	for id := uint16(1); id <= 3; id++ {
		c.send(t, &packet.Publish{Topic: "rm/t", QoS: 2, PacketID: id, Payload: []byte("x")})
		c.expectAck(t, packet.PUBREC, id)
	}
	// A resent one (DUP, same id) does not count twice.
	c.send(t, &packet.Publish{Topic: "rm/t", QoS: 2, PacketID: 3, Dup: true, Payload: []byte("x")})
	c.expectAck(t, packet.PUBREC, 3)
	// PUBREL frees a slot.
	c.send(t, &packet.Ack{Kind: packet.PUBREL, PacketID: 1})
	c.expectAck(t, packet.PUBCOMP, 1)
	c.send(t, &packet.Publish{Topic: "rm/t", QoS: 2, PacketID: 4, Payload: []byte("x")})
	c.expectAck(t, packet.PUBREC, 4)
	// Three are awaiting PUBREL: a fourth QoS 1/2 publish is one too many.
	c.send(t, &packet.Publish{Topic: "rm/t", QoS: 1, PacketID: 5, Payload: []byte("x")})
	d, ok := c.read(t).(*packet.Disconnect)
	if !ok || d.ReasonCode != packet.ReceiveMaximumExceeded {
		t.Fatalf("got %#v, want DISCONNECT 0x93", d)
	}
	c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after DISCONNECT 0x93: %v", err)
	}
}

// TestMQTTQoS2StateSurvivesKill9: the packet id of a QoS 2 publish
// awaiting PUBREL is part of the persistent session, on disk before the
// PUBREC: after kill -9 a resent PUBLISH with it is answered PUBREC
// without routing the message again (exactly once), its PUBREL gets
// PUBCOMP; an id the session never had gets PUBCOMP 0x92 so the client
// can finish the flow.
func TestMQTTQoS2StateSurvivesKill9(t *testing.T) {
	p, killAndRestart := startKillableMQTT(t)
	amqpChannel := func(addr string) (*amqp.Connection, *amqp.Channel) {
		conn, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		return conn, ch
	}
	conn, ch := amqpChannel(p.addr)
	if _, err := ch.QueueDeclare("rel-q", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("rel-q", "rel.t", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	expiry := packet.Ptr[uint32](600)
	c, _ := dialRawMQTT(t, p.mqtt, &packet.Connect{ClientID: "rel", CleanStart: true,
		Properties: packet.Properties{SessionExpiry: expiry}})
	c.send(t, &packet.Publish{Topic: "rel/t", QoS: 2, PacketID: 42, Payload: []byte("once")})
	c.expectAck(t, packet.PUBREC, 42)
	p = killAndRestart()
	c.nc.Close()
	c, ack := dialRawMQTT(t, p.mqtt, &packet.Connect{ClientID: "rel", Properties: packet.Properties{SessionExpiry: expiry}})
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	// As if our PUBREC had been lost: the client sends the PUBLISH again.
	c.send(t, &packet.Publish{Topic: "rel/t", QoS: 2, PacketID: 42, Dup: true, Payload: []byte("once")})
	c.expectAck(t, packet.PUBREC, 42)
	c.send(t, &packet.Ack{Kind: packet.PUBREL, PacketID: 42})
	if a := c.expectAck(t, packet.PUBCOMP, 42); a.ReasonCode != 0 {
		t.Fatalf("PUBCOMP reason 0x%02x, want success", byte(a.ReasonCode))
	}
	c.send(t, &packet.Ack{Kind: packet.PUBREL, PacketID: 43})
	if a := c.expectAck(t, packet.PUBCOMP, 43); a.ReasonCode != packet.PacketIdentifierNotFound {
		t.Fatalf("PUBCOMP reason 0x%02x for an unknown id, want 0x92", byte(a.ReasonCode))
	}
	_, ch = amqpChannel(p.addr)
	if q, err := ch.QueueDeclarePassive("rel-q", true, false, false, false, nil); err != nil || q.Messages != 1 {
		t.Fatalf("rel-q holds %d messages (%v), want exactly 1", q.Messages, err)
	}
}

// TestMQTTRetainedSurvivesKill9: a retained message whose PUBACK the
// publisher got, and a clear whose PUBACK it got, survive SIGKILL of the
// real binary.
func TestMQTTRetainedSurvivesKill9(t *testing.T) {
	p, killAndRestart := startKillableMQTT(t)
	pub := dialMQTTV3(t, p.mqtt, "k9-pub", true)
	waitMQTTToken(t, pub.Publish("k9/keep", 1, true, "kept"))
	waitMQTTToken(t, pub.Publish("k9/gone", 1, true, "soon"))
	waitMQTTToken(t, pub.Publish("k9/gone", 1, true, ""))
	p = killAndRestart()
	pub.Disconnect(0)
	sub, _ := dialMQTTV5(t, p.mqtt, &paho.Connect{ClientID: "k9-sub", CleanStart: true})
	sub.subscribe(t, 0, paho.SubscribeOptions{Topic: "k9/#", QoS: 1})
	if m := sub.next(t); m.Topic != "k9/keep" || string(m.Payload) != "kept" || !m.Retain {
		t.Fatalf("after kill -9: %q %q retain %v", m.Topic, m.Payload, m.Retain)
	}
	sub.nothingBut(t, "probe/k9")
}

// startKillableMQTT runs the binary (a parallel test, skipped with -short)
// with its MQTT listener on a free port (p.mqtt); killAndRestart SIGKILLs
// it and starts it again on the same data directory. SIGKILLed at cleanup
// if still running.
func startKillableMQTT(t *testing.T) (p *heraldProc, killAndRestart func() *heraldProc) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	bin, dir, logs := buildHerald(t), t.TempDir(), &procLog{}
	p = startHerald(t, bin, dir, 1, logs, "mqtt")
	return p, func() *heraldProc {
		p.kill()
		p = startHerald(t, bin, dir, 2, logs, "mqtt")
		return p
	}
}

// pubrelAcrossRestart drives an outbound QoS 2 flow to the point where the
// subscriber has the PUBREL but has not answered PUBCOMP, restarts the
// server with restart (which returns the new MQTT address), and checks that
// the resumed persistent session gets the PUBREL again first, with the
// original id [MQTT-4.4.0-1], that the message is not delivered again,
// and that the id stays reserved until its PUBCOMP.
func pubrelAcrossRestart(t *testing.T, addr string, restart func() string) {
	t.Helper()
	connect := func(addr string, clean bool) (*rawMQTTConn, *packet.Connack) {
		return dialRawMQTT(t, addr, &packet.Connect{ClientID: "relout", CleanStart: clean,
			Properties: packet.Properties{SessionExpiry: packet.Ptr[uint32](600)}})
	}
	readPublish := func(c *rawMQTTConn, payload string) *packet.Publish {
		t.Helper()
		p, ok := c.read(t).(*packet.Publish)
		if !ok || p.QoS != 2 || string(p.Payload) != payload {
			t.Fatalf("got %#v, want %q at QoS 2", p, payload)
		}
		return p
	}
	c, _ := connect(addr, true)
	c.send(t, &packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "relout/t", QoS: 2}}})
	if p := c.read(t); p.Type() != packet.SUBACK {
		t.Fatalf("got %#v, want SUBACK", p)
	}
	pub := dialMQTTV3(t, addr, "relout-pub", true)
	waitMQTTToken(t, pub.Publish("relout/t", 2, false, "once"))
	held := readPublish(c, "once").PacketID
	c.send(t, &packet.Ack{Kind: packet.PUBREC, PacketID: held})
	c.expectAck(t, packet.PUBREL, held)
	pub.Disconnect(0)
	addr = restart()
	c.nc.Close()

	c, ack := connect(addr, false)
	if !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	c.expectAck(t, packet.PUBREL, held)
	pub = dialMQTTV3(t, addr, "relout-pub", true)
	for i := range 10 {
		waitMQTTToken(t, pub.Publish("relout/t", 2, false, fmt.Sprint("next", i)))
		p := readPublish(c, fmt.Sprint("next", i)) // "once" is not delivered again
		if p.PacketID == held {
			t.Fatalf("id %d handed out again before its PUBCOMP", held)
		}
		c.send(t, &packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
		c.expectAck(t, packet.PUBREL, p.PacketID)
		c.send(t, &packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID})
	}
	c.send(t, &packet.Ack{Kind: packet.PUBCOMP, PacketID: held})
	// Completed: a PING round trip shows the PUBCOMP was handled, and the
	// next resume has nothing to release.
	c.send(t, &packet.Pingreq{})
	if p := c.read(t); p.Type() != packet.PINGRESP {
		t.Fatalf("got %#v, want PINGRESP", p)
	}
	c.nc.Close()
	c, _ = connect(addr, false)
	c.send(t, &packet.Pingreq{})
	if p := c.read(t); p.Type() != packet.PINGRESP {
		t.Fatalf("got %#v after resuming a session with nothing awaiting PUBCOMP, want PINGRESP", p)
	}
}

// TestMQTTPubrelResentAfterRestart: a persistent session's outbound QoS 2
// flow between PUBREC and PUBCOMP survives a restart on the same data
// directory: its PUBREL is sent again with the original id.
func TestMQTTPubrelResentAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := mqttServer(t, dir)
	pubrelAcrossRestart(t, srv.MQTTAddr().String(), func() string {
		srv.stop()
		srv = mqttServer(t, dir)
		return srv.MQTTAddr().String()
	})
}

// TestMQTTPubrelSurvivesKill9: the same after SIGKILL of the real binary
// right after the PUBREL: the record listing its id (and the queue's ack
// of the message) was on disk before the PUBREL went out.
func TestMQTTPubrelSurvivesKill9(t *testing.T) {
	p, killAndRestart := startKillableMQTT(t)
	pubrelAcrossRestart(t, p.mqtt, func() string { return killAndRestart().mqtt })
}
