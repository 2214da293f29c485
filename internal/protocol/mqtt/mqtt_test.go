package mqtt

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

func TestQoSDeliveryV3(t *testing.T) {
	e := startEnv(t, Config{})
	for _, subQoS := range []byte{0, 1, 2} {
		for _, pubQoS := range []byte{0, 1, 2} {
			t.Run(fmt.Sprintf("sub%d_pub%d", subQoS, pubQoS), func(t *testing.T) {
				topic := fmt.Sprintf("q/%d/%d", subQoS, pubQoS)
				var got atomic.Int32
				var maxQoS atomic.Int32
				all := make(chan struct{})
				sub := e.v3(fmt.Sprintf("sub-%d-%d", subQoS, pubQoS), true)
				wait(t, sub.Subscribe(topic, subQoS, func(_ pahov3.Client, m pahov3.Message) {
					if int32(m.Qos()) > maxQoS.Load() {
						maxQoS.Store(int32(m.Qos()))
					}
					if got.Add(1) == 50 {
						close(all)
					}
				}))
				pub := e.v3(fmt.Sprintf("pub-%d-%d", subQoS, pubQoS), true)
				for i := range 50 {
					wait(t, pub.Publish(topic, pubQoS, false, fmt.Sprint(i)))
				}
				select {
				case <-all:
				case <-time.After(5 * time.Second):
					t.Fatalf("got %d of 50", got.Load())
				}
				if want := min(subQoS, pubQoS); maxQoS.Load() != int32(want) {
					t.Fatalf("delivered at QoS %d, want %d", maxQoS.Load(), want)
				}
			})
		}
	}
}

func TestRetainedSetAndClear(t *testing.T) {
	e := startEnv(t, Config{})
	pub := e.v3("ret-pub", true)
	wait(t, pub.Publish("home/temp", 1, true, "21"))
	got := make(chan pahov3.Message, 10)
	s1 := e.v3("ret-s1", true)
	wait(t, s1.Subscribe("home/+", 1, func(_ pahov3.Client, m pahov3.Message) { got <- m }))
	select {
	case m := <-got:
		if string(m.Payload()) != "21" || !m.Retained() || m.Topic() != "home/temp" {
			t.Fatalf("retained = %q retained=%v topic=%q", m.Payload(), m.Retained(), m.Topic())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained message")
	}
	// An empty retained payload clears [MQTT-3.3.1-10].
	wait(t, pub.Publish("home/temp", 1, true, ""))
	<-got // s1 receives the empty publish itself
	v, _ := e.v5(&paho.Connect{ClientID: "ret-s2", CleanStart: true})
	v.sub(t, paho.SubscribeOptions{Topic: "home/#", QoS: 1})
	v.none(t, "probe/ret")
}

func TestRetainHandlingV5(t *testing.T) {
	e := startEnv(t, Config{})
	p, _ := e.v5(&paho.Connect{ClientID: "rh-pub", CleanStart: true})
	p.pub(t, &paho.Publish{Topic: "rh/a", QoS: 1, Retain: true, Payload: []byte("x")})
	v, _ := e.v5(&paho.Connect{ClientID: "rh-sub", CleanStart: true})
	v.sub(t, paho.SubscribeOptions{Topic: "rh/#", RetainHandling: 1})
	if m := v.next(t); string(m.Payload) != "x" || !m.Retain {
		t.Fatalf("retained %q retain=%v", m.Payload, m.Retain)
	}
	// Retain Handling 1: an existing subscription gets nothing again.
	v.sub(t, paho.SubscribeOptions{Topic: "rh/#", RetainHandling: 1})
	// Retain Handling 2: never.
	v.sub(t, paho.SubscribeOptions{Topic: "rh/+", RetainHandling: 2})
	v.none(t, "probe/rh")
}

func TestWill(t *testing.T) {
	e := startEnv(t, Config{})
	w, _ := e.v5(&paho.Connect{ClientID: "will-watch", CleanStart: true})
	w.sub(t, paho.SubscribeOptions{Topic: "will/#", QoS: 1})

	// Abrupt close: the will is published.
	a, _ := e.v5(&paho.Connect{ClientID: "will-a", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "will/a", Payload: []byte("gone"), QoS: 1}})
	a.nc.Close()
	if m := w.next(t); m.Topic != "will/a" || string(m.Payload) != "gone" {
		t.Fatalf("will = %s %q", m.Topic, m.Payload)
	}
	// Clean DISCONNECT: no will [MQTT-3.14.4-3].
	b, _ := e.v5(&paho.Connect{ClientID: "will-b", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "will/b", Payload: []byte("gone"), QoS: 1}})
	b.Disconnect(&paho.Disconnect{})
	waitFor(t, "will-b gone", func() bool { return e.h.ConnectionCount() == 1 }) // only will-watch is left
	// DISCONNECT 0x04: will published anyway.
	c, _ := e.v5(&paho.Connect{ClientID: "will-c", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "will/c", Payload: []byte("bye")}})
	c.Disconnect(&paho.Disconnect{ReasonCode: 0x04})
	if m := w.next(t); m.Topic != "will/c" {
		t.Fatalf("will = %s, want will/c (will/b must not fire)", m.Topic)
	}
}

func TestWillOnKeepAliveTimeout(t *testing.T) {
	e := startEnv(t, Config{})
	w, _ := e.v5(&paho.Connect{ClientID: "ka-watch", CleanStart: true})
	w.sub(t, paho.SubscribeOptions{Topic: "ka/will"})
	// A raw client that connects with keep-alive 1 s and then stays silent.
	nc := e.v5dial(e.addr)
	defer nc.Close()
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanStart: true, KeepAlive: 1, ClientID: "ka",
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest"),
		Will: &packet.Will{Topic: "ka/will", Payload: []byte("timeout")}}
	nc.Write(cp.Encode(nil, 4))
	start := time.Now()
	if m := w.next(t); string(m.Payload) != "timeout" {
		t.Fatalf("will %q", m.Payload)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("closed after %v, before 1.5x keep-alive", d)
	}
}

func TestPersistentSessionOfflineQueue(t *testing.T) {
	e := startEnv(t, Config{})
	got := make(chan pahov3.Message, 100)
	handler := func(o *pahov3.ClientOptions) {
		o.SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { got <- m })
	}
	s := e.v3("offline", false, handler)
	wait(t, s.Subscribe("off/#", 1, nil))
	s.Disconnect(100)
	waitFor(t, "offline gone", func() bool { return e.h.ConnectionCount() == 0 })

	p := e.v3("off-pub", true)
	for i := range 5 {
		wait(t, p.Publish("off/x", 1, false, fmt.Sprint(i)))
	}
	if q, err := e.b.VHost("/").Queue("mqtt-subscription-offlineqos1"); err != nil || q.Stats().Ready != 5 {
		t.Fatalf("session queue: %v", err)
	}
	o := pahov3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("offline").SetUsername("guest").
		SetPassword("guest").SetCleanSession(false).SetAutoReconnect(false)
	handler(o)
	s2 := pahov3.NewClient(o)
	tok := s2.Connect()
	wait(t, tok)
	defer s2.Disconnect(0)
	if !tok.(*pahov3.ConnectToken).SessionPresent() {
		t.Fatal("session present = false")
	}
	for i := range 5 {
		select {
		case m := <-got:
			if string(m.Payload()) != fmt.Sprint(i) {
				t.Fatalf("message %d = %q", i, m.Payload())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 5 offline messages", i)
		}
	}
}

func TestRedeliveryWithDUP(t *testing.T) {
	e := startEnv(t, Config{})
	// A v5 client with manual acks receives a QoS 1 message, does not ack,
	// and drops the connection: on reconnect it comes again with DUP.
	nc := e.v5dial(e.addr)
	msgs := make(chan *paho.Publish, 10)
	c := paho.NewClient(paho.ClientConfig{Conn: nc, EnableManualAcknowledgment: true,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			msgs <- pr.Packet
			return true, nil
		}}})
	_, err := c.Connect(ctx5(t), &paho.Connect{ClientID: "dup", KeepAlive: 30, Username: "guest", UsernameFlag: true,
		Password: []byte("guest"), PasswordFlag: true, Properties: &paho.ConnectProperties{SessionExpiryInterval: packet.Ptr[uint32](60)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "dup/t", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	p, _ := e.v5(&paho.Connect{ClientID: "dup-pub", CleanStart: true})
	p.pub(t, &paho.Publish{Topic: "dup/t", QoS: 1, Payload: []byte("m")})
	select {
	case <-msgs:
	case <-time.After(5 * time.Second):
		t.Fatal("no first delivery")
	}
	nc.Close()
	<-c.Done()
	waitFor(t, "dup gone", func() bool { return e.h.ConnectionCount() == 1 })

	// Reconnect with a raw socket to see the DUP flag on the wire.
	raw := e.v5dial(e.addr)
	defer raw.Close()
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: 5, ClientID: "dup", KeepAlive: 30,
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest"),
		Properties: packet.Properties{SessionExpiry: packet.Ptr[uint32](0)}}
	raw.Write(cp.Encode(nil, 5))
	r := bufio.NewReader(raw)
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack, err := packet.Read(r, 5, 0)
	if err != nil || !ack.(*packet.Connack).SessionPresent {
		t.Fatalf("connack %#v %v", ack, err)
	}
	pk, err := packet.Read(r, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pub := pk.(*packet.Publish); !pub.Dup || string(pub.Payload) != "m" {
		t.Fatalf("redelivery %#v", pub)
	}
}

func TestSharedSubscriptionSplitsLoad(t *testing.T) {
	e := startEnv(t, Config{})
	a, _ := e.v5(&paho.Connect{ClientID: "sh-a", CleanStart: true})
	b, _ := e.v5(&paho.Connect{ClientID: "sh-b", CleanStart: true})
	a.sub(t, paho.SubscribeOptions{Topic: "$share/g/jobs/+", QoS: 1})
	b.sub(t, paho.SubscribeOptions{Topic: "$share/g/jobs/+", QoS: 1})
	p, _ := e.v5(&paho.Connect{ClientID: "sh-p", CleanStart: true})
	const n = 40
	for i := range n {
		p.pub(t, &paho.Publish{Topic: "jobs/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	na, nb := 0, 0
	for na+nb < n {
		select {
		case <-a.msgs:
			na++
		case <-b.msgs:
			nb++
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d+%d of %d", na, nb, n)
		}
	}
	if na == 0 || nb == 0 {
		t.Fatalf("load not split: %d/%d", na, nb)
	}
}

func TestTopicAliasesBothWays(t *testing.T) {
	e := startEnv(t, Config{})
	s, ca := e.v5(&paho.Connect{ClientID: "al-s", CleanStart: true,
		Properties: &paho.ConnectProperties{TopicAliasMaximum: packet.Ptr[uint16](5)}})
	if ca.Properties.TopicAliasMaximum == nil || *ca.Properties.TopicAliasMaximum != DefaultTopicAliasMaximum {
		t.Fatalf("server topic alias maximum %v", ca.Properties.TopicAliasMaximum)
	}
	s.sub(t, paho.SubscribeOptions{Topic: "al/#"})
	p, _ := e.v5(&paho.Connect{ClientID: "al-p", CleanStart: true})
	// Inbound: set alias 1, then publish by alias only.
	p.pub(t, &paho.Publish{Topic: "al/long/topic", Payload: []byte("1"), Properties: &paho.PublishProperties{TopicAlias: packet.Ptr[uint16](1)}})
	p.pub(t, &paho.Publish{Payload: []byte("2"), Properties: &paho.PublishProperties{TopicAlias: packet.Ptr[uint16](1)}})
	m1, m2 := s.next(t), s.next(t)
	// Outbound: the first delivery carries topic + alias, the next only the alias.
	if m1.Topic != "al/long/topic" || m1.Properties.TopicAlias == nil {
		t.Fatalf("first delivery %q alias %v", m1.Topic, m1.Properties.TopicAlias)
	}
	if m2.Topic != "" || m2.Properties.TopicAlias == nil || *m2.Properties.TopicAlias != *m1.Properties.TopicAlias || string(m2.Payload) != "2" {
		t.Fatalf("second delivery %q alias %v", m2.Topic, m2.Properties.TopicAlias)
	}
}

func TestUserPropertiesBecomeAMQPHeaders(t *testing.T) {
	e := startEnv(t, Config{})
	ch := e.amqp()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "sensors.*", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	dels, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := e.v5(&paho.Connect{ClientID: "up", CleanStart: true})
	p.pub(t, &paho.Publish{Topic: "sensors/temp", QoS: 1, Payload: []byte("21.5"), Properties: &paho.PublishProperties{
		ContentType: "text/plain", CorrelationData: []byte("c-1"), MessageExpiry: packet.Ptr[uint32](60),
		User: paho.UserProperties{{Key: "unit", Value: "celsius"}, {Key: "room", Value: "kitchen"}}}})
	select {
	case d := <-dels:
		if d.RoutingKey != "sensors.temp" || d.Headers["unit"] != "celsius" || d.Headers["room"] != "kitchen" ||
			d.ContentType != "text/plain" || d.CorrelationId != "c-1" || d.Expiration != "60000" || d.DeliveryMode != 2 {
			t.Fatalf("delivery %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no AMQP delivery")
	}
}

func TestAMQPPublishReachesMQTT(t *testing.T) {
	e := startEnv(t, Config{})
	s, _ := e.v5(&paho.Connect{ClientID: "am", CleanStart: true})
	s.sub(t, paho.SubscribeOptions{Topic: "orders/+/new", QoS: 1})
	ch := e.amqp()
	err := ch.Publish("amq.topic", "orders.eu.new", false, false, amqp.Publishing{
		Body: []byte("o1"), ContentType: "application/json", Headers: amqp.Table{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	m := s.next(t)
	if m.Topic != "orders/eu/new" || string(m.Payload) != "o1" || m.Properties.ContentType != "application/json" ||
		m.Properties.User.Get("k") != "v" {
		t.Fatalf("got %s %q %+v", m.Topic, m.Payload, m.Properties)
	}
}

func TestRequestAnsweredByAMQPServer(t *testing.T) {
	e := startEnv(t, Config{})
	ch := e.amqp()
	q, err := ch.QueueDeclare("rpc", false, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "rpc.add", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	dels, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the classic amqp091-go RPC server: reply to "" / reply_to
		defer wg.Done()
		d := <-dels
		ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("re:"), d.Body...)})
	}()
	r, _ := e.v5(&paho.Connect{ClientID: "req", CleanStart: true})
	r.sub(t, paho.SubscribeOptions{Topic: "replies/req"})
	r.pub(t, &paho.Publish{Topic: "rpc/add", QoS: 1, Payload: []byte("1+2"),
		Properties: &paho.PublishProperties{ResponseTopic: "replies/req", CorrelationData: []byte("42")}})
	m := r.next(t)
	wg.Wait()
	if m.Topic != "replies/req" || string(m.Payload) != "re:1+2" || string(m.Properties.CorrelationData) != "42" {
		t.Fatalf("reply %s %q %q", m.Topic, m.Payload, m.Properties.CorrelationData)
	}
}

func TestNoLocalAndDollarTopics(t *testing.T) {
	e := startEnv(t, Config{})
	c, _ := e.v5(&paho.Connect{ClientID: "nl", CleanStart: true})
	c.sub(t, paho.SubscribeOptions{Topic: "nl/t", NoLocal: true}, paho.SubscribeOptions{Topic: "#"})
	c.Unsubscribe(ctx5(t), &paho.Unsubscribe{Topics: []string{"#"}})
	c.pub(t, &paho.Publish{Topic: "nl/t", Payload: []byte("mine")})
	// '#' must not match "$SYS/x" [MQTT-4.7.2-1].
	d, _ := e.v5(&paho.Connect{ClientID: "dl", CleanStart: true})
	d.sub(t, paho.SubscribeOptions{Topic: "#"})
	c.pub(t, &paho.Publish{Topic: "$SYS/x", Payload: []byte("sys")})
	d.none(t, "probe/dl")
	c.none(t, "probe/nl")
}

func TestBadCredentialsAndProtocol(t *testing.T) {
	e := startEnv(t, Config{})
	// 3.1.1: CONNACK 0x05.
	o := pahov3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("bad").SetUsername("guest").
		SetPassword("nope").SetAutoReconnect(false).SetProtocolVersion(4)
	c := pahov3.NewClient(o)
	tok := c.Connect()
	tok.WaitTimeout(5 * time.Second)
	if tok.(*pahov3.ConnectToken).ReturnCode() != packet.V3NotAuthorized {
		t.Fatalf("v3 return code %d (%v)", tok.(*pahov3.ConnectToken).ReturnCode(), tok.Error())
	}
	// v5: 0x86.
	v, ca := e.v5on(e.v5dial(e.addr), &paho.Connect{ClientID: "bad5", Username: "guest", UsernameFlag: true, Password: []byte("x"), PasswordFlag: true})
	_ = v
	if ca == nil || ca.ReasonCode != byte(packet.BadUserNameOrPassword) {
		t.Fatalf("v5 connack %+v", ca)
	}
	// Unknown vhost: not authorized.
	_, ca = e.v5on(e.v5dial(e.addr), &paho.Connect{ClientID: "bad6", Username: "nosuch:guest", UsernameFlag: true, Password: []byte("guest"), PasswordFlag: true})
	if ca == nil || ca.ReasonCode != byte(packet.NotAuthorized) {
		t.Fatalf("vhost connack %+v", ca)
	}
	// Wrong protocol name with level 5: CONNACK 0x84; with level 4: closed.
	for level, want := range map[byte]int{5: 0x84, 4: -1} {
		nc := e.v5dial(e.addr)
		cp := &packet.Connect{ProtocolName: "MQTX", ProtocolLevel: level, ClientID: "x"}
		nc.Write(cp.Encode(nil, level))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := packet.Read(bufio.NewReader(nc), 5, 0)
		nc.Close()
		if want < 0 {
			if err == nil {
				t.Fatalf("level %d: got %#v, want close", level, p)
			}
		} else if err != nil || p.(*packet.Connack).ReasonCode != packet.ReasonCode(want) {
			t.Fatalf("level %d: %#v %v", level, p, err)
		}
	}
}

func TestInvalidFilterAndMalformedIsolation(t *testing.T) {
	e := startEnv(t, Config{MaxPacketSize: 1024})
	good, _ := e.v5(&paho.Connect{ClientID: "good", CleanStart: true})
	good.sub(t, paho.SubscribeOptions{Topic: "iso/t"})
	sa := good.sub(t, paho.SubscribeOptions{Topic: "a/#/b"}, paho.SubscribeOptions{Topic: "ok/+", QoS: 1})
	if sa.Reasons[0] != byte(packet.TopicFilterInvalid) || sa.Reasons[1] != 1 {
		t.Fatalf("suback %v", sa.Reasons)
	}
	v3 := e.v3("v3filter", true)
	// paho refuses "a/#/b" itself; "$share/g" (a share without a filter)
	// gets past it and must be refused by the server.
	tok := v3.Subscribe("$share/g", 0, nil)
	tok.WaitTimeout(5 * time.Second)
	// (paho keys the result by the filter without its $share prefix.)
	if st, ok := tok.(*pahov3.SubscribeToken); !ok || len(st.Result()) != 1 || st.Result()[""] != 0x80 {
		t.Fatalf("v3 suback %v", tok.(*pahov3.SubscribeToken).Result())
	}
	// A client sending a packet over the maximum size gets DISCONNECT 0x95.
	big, _ := e.v5(&paho.Connect{ClientID: "big", CleanStart: true})
	big.Publish(ctx5(t), &paho.Publish{Topic: "iso/t", Payload: make([]byte, 2000)})
	select {
	case d := <-big.disc:
		if d.ReasonCode != byte(packet.PacketTooLarge) {
			t.Fatalf("disconnect 0x%x", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT for oversized packet")
	}
	// A malformed packet (QoS 3 PUBLISH) from a raw client: it is closed ...
	nc := e.v5dial(e.addr)
	cp := &packet.Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanStart: true, ClientID: "mal",
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest")}
	nc.Write(cp.Encode(nil, 5))
	r := bufio.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := packet.Read(r, 5, 0); err != nil {
		t.Fatal(err)
	}
	nc.Write([]byte{0x36, 0x05, 0, 1, 't', 0, 1})
	p, err := packet.Read(r, 5, 0)
	if err != nil || p.(*packet.Disconnect).ReasonCode != packet.MalformedPacket {
		t.Fatalf("after malformed: %#v %v", p, err)
	}
	nc.Close()
	// ... and the other clients go on.
	good.pub(t, &paho.Publish{Topic: "iso/t", Payload: []byte("still here")})
	if m := good.next(t); string(m.Payload) != "still here" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestTakeoverAndShutdown(t *testing.T) {
	e := startEnv(t, Config{})
	first, _ := e.v5(&paho.Connect{ClientID: "same", CleanStart: true})
	second, _ := e.v5(&paho.Connect{ClientID: "same", CleanStart: true})
	select {
	case d := <-first.disc:
		if d.ReasonCode != byte(packet.SessionTakenOver) {
			t.Fatalf("takeover disconnect 0x%x", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first connection not taken over")
	}
	e.cancel() // server shutdown
	select {
	case d := <-second.disc:
		if d.ReasonCode != byte(packet.ServerShuttingDown) {
			t.Fatalf("shutdown disconnect 0x%x", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT 0x8B on shutdown")
	}
}

func TestAssignedClientIDAndSessionExpiry(t *testing.T) {
	e := startEnv(t, Config{})
	_, ca := e.v5(&paho.Connect{CleanStart: true})
	if !strings.HasPrefix(ca.Properties.AssignedClientID, "herald-") {
		t.Fatalf("assigned id %q", ca.Properties.AssignedClientID)
	}
	c, _ := e.v5(&paho.Connect{ClientID: "exp", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: packet.Ptr[uint32](1)}})
	c.sub(t, paho.SubscribeOptions{Topic: "exp/t", QoS: 1})
	c.Disconnect(&paho.Disconnect{})
	v := e.b.VHost("/")
	waitFor(t, "session expiry", func() bool { _, err := v.Queue("mqtt-subscription-expqos1"); return err != nil })
}

func TestWebSocket(t *testing.T) {
	e := startEnv(t, Config{})
	srv := httptest.NewServer(http.HandlerFunc(e.h.ServeWebSocket))
	defer srv.Close()
	got := make(chan string, 1)
	o := pahov3.NewClientOptions().AddBroker("ws://" + strings.TrimPrefix(srv.URL, "http://") + "/ws").
		SetClientID("ws").SetUsername("guest").SetPassword("guest").SetAutoReconnect(false)
	c := pahov3.NewClient(o)
	wait(t, c.Connect())
	defer c.Disconnect(0)
	wait(t, c.Subscribe("ws/t", 1, func(_ pahov3.Client, m pahov3.Message) { got <- string(m.Payload()) }))
	wait(t, c.Publish("ws/t", 1, false, "over websocket"))
	select {
	case s := <-got:
		if s != "over websocket" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message over websocket")
	}
}

// TestInlineWriteHandoff: a delivery the socket does not take at once is
// started by the dispatching goroutine (an inline write) and finished by a
// writer goroutine; what follows it comes after it, intact and in order.
func TestInlineWriteHandoff(t *testing.T) {
	e := startEnv(t, Config{})
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			topic := fmt.Sprintf("big/%d", qos)
			got := make(chan []byte, 64)
			release := make(chan struct{})
			var first sync.Once
			// The subscriber stalls on the first message, so the socket
			// fills up and an inline write is left unfinished.
			sub := e.v3(fmt.Sprintf("big-sub-%d", qos), true)
			wait(t, sub.Subscribe(topic, qos, func(_ pahov3.Client, m pahov3.Message) {
				first.Do(func() { <-release })
				got <- m.Payload()
			}))
			pub := e.v3(fmt.Sprintf("big-pub-%d", qos), true)
			var want [][]byte
			for i := range 24 {
				n := 10
				if i%2 == 1 {
					n = 4 << 20
				}
				body := []byte(strings.Repeat(string(rune('a'+i)), n))
				want = append(want, body)
				wait(t, pub.Publish(topic, qos, false, body))
				// Let the connection go idle, so the next one is written inline.
				time.Sleep(2 * inlineGap)
			}
			close(release)
			for i, w := range want {
				select {
				case b := <-got:
					if string(b) != string(w) {
						t.Fatalf("message %d: got %d bytes of %q, want %d of %q", i, len(b), b[:1], len(w), w[:1])
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("got %d of %d messages", i, len(want))
				}
			}
		})
	}
}
