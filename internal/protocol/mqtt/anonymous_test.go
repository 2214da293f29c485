package mqtt

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/heraldmq/herald/internal/metrics"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// anonV3 connects a paho.mqtt.golang 3.1.1 client without a user name and
// returns it with its CONNACK return code.
func (e *testEnv) anonV3(id string) (pahov3.Client, byte) {
	e.t.Helper()
	o := pahov3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(id).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4)
	c := pahov3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		e.t.Fatal("v3 connect timed out")
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c, tok.(*pahov3.ConnectToken).ReturnCode()
}

// anonV5 connects a paho.golang MQTT 5 client over nc without a user name.
func (e *testEnv) anonV5(nc net.Conn, id string) *paho.Connack {
	e.t.Helper()
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true})
	e.t.Cleanup(func() {
		c.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-c.Done()
	})
	if ca == nil {
		e.t.Fatalf("v5 connect %s: %v", id, err)
	}
	return ca
}

// TestAnonymousLoginAsGuest: a CONNECT without a user name logs in as the
// default user from localhost (RabbitMQ's mqtt.allow_anonymous), and the
// session works: what it publishes reaches a subscriber.
func TestAnonymousLoginAsGuest(t *testing.T) {
	e := startEnv(t, Config{})
	sub, rc := e.anonV3("anon-sub")
	if rc != packet.V3Accepted {
		t.Fatalf("v3 anonymous connack %d", rc)
	}
	got := make(chan string, 1)
	wait(t, sub.Subscribe("anon/t", 1, func(_ pahov3.Client, m pahov3.Message) { got <- string(m.Payload()) }))
	if ca := e.anonV5(e.v5dial(e.addr), "anon5"); ca.ReasonCode != 0 {
		t.Fatalf("v5 anonymous connack %#x", ca.ReasonCode)
	}
	pub, _ := e.anonV3("anon-pub")
	wait(t, pub.Publish("anon/t", 1, false, "hello"))
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	// The connections are guest's in the management view. A connection is
	// registered just after its CONNACK is written, so the last one may
	// appear a moment after the client saw it.
	count := func() int {
		n := 0
		for _, ci := range e.b.Connections() {
			if strings.HasPrefix(ci.Protocol, "MQTT") {
				n++
				if ci.User != "guest" || ci.VHost != "/" {
					t.Fatalf("anonymous connection listed as user %q vhost %q", ci.User, ci.VHost)
				}
			}
		}
		return n
	}
	n := count()
	for deadline := time.Now().Add(5 * time.Second); n != 3 && time.Now().Before(deadline); n = count() {
		time.Sleep(10 * time.Millisecond)
	}
	if n != 3 {
		t.Fatalf("%d MQTT connections listed, want 3", n)
	}
}

// TestAnonymousRefused: --mqtt-allow-anonymous=false refuses it (3.1.1
// 0x04 bad user name or password, v5 0x86); the default user being a
// loopback user refuses it from a remote address (0x05 / 0x87), as guest
// is refused over AMQP.
func TestAnonymousRefused(t *testing.T) {
	e := startEnv(t, Config{DenyAnonymous: true})
	if _, rc := e.anonV3("deny3"); rc != packet.V3BadUserNameOrPassword {
		t.Fatalf("v3 connack %d, want %d", rc, packet.V3BadUserNameOrPassword)
	}
	if ca := e.anonV5(e.v5dial(e.addr), "deny5"); ca.ReasonCode != byte(packet.BadUserNameOrPassword) {
		t.Fatalf("v5 connack %#x", ca.ReasonCode)
	}

	open := startEnv(t, Config{})
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		open.h.ServeConn(context.Background(), remoteConn{server})
	}()
	if ca := open.anonV5(client, "remote"); ca.ReasonCode != byte(packet.NotAuthorized) {
		t.Fatalf("remote anonymous connack %#x, want 0x87", ca.ReasonCode)
	}
	client.Close()
	<-done
}

// remoteConn pretends to come from another host.
type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000} }

// TestAnonymousOverWebSocketCounted: MQTT over WebSocket logs in anonymous
// clients too, and its connections and refused logins count under the
// label mqtt-ws, those over TCP under mqtt.
func TestAnonymousOverWebSocketCounted(t *testing.T) {
	m := metrics.New(nil)
	e := startEnv(t, Config{Counters: m.Counters})
	srv := httptest.NewServer(http.HandlerFunc(e.h.ServeWebSocket))
	defer srv.Close()
	o := pahov3.NewClientOptions().AddBroker("ws://" + strings.TrimPrefix(srv.URL, "http://") + "/ws").
		SetClientID("anon-ws").SetAutoReconnect(false).SetProtocolVersion(4)
	c := pahov3.NewClient(o)
	wait(t, c.Connect())
	c.Disconnect(0)
	bad := pahov3.NewClient(pahov3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("bad").
		SetUsername("nobody").SetPassword("nope").SetAutoReconnect(false).SetProtocolVersion(4))
	if tok := bad.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() == nil {
		t.Fatalf("unknown user: %v", tok.Error())
	}
	want := map[string]float64{"ws opened": 1, "tcp opened": 1, "tcp auth": 1, "ws auth": 0}
	got := func() map[string]float64 {
		return map[string]float64{
			"ws opened":  counter(t, m, "herald_connections_opened_total", metrics.ProtocolMQTTWS),
			"tcp opened": counter(t, m, "herald_connections_opened_total", metrics.ProtocolMQTT),
			"tcp auth":   counter(t, m, "herald_auth_failures_total", metrics.ProtocolMQTT),
			"ws auth":    counter(t, m, "herald_auth_failures_total", metrics.ProtocolMQTTWS),
		}
	}
	if g := got(); !maps.Equal(g, want) {
		t.Fatalf("counters %v, want %v", g, want)
	}
}

// counter reads a counter of m by name and protocol label (0 if absent).
func counter(t *testing.T, m *metrics.Metrics, name, protocol string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "protocol" && l.GetValue() == protocol {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
