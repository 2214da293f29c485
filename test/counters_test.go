package test

import (
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestConnectionAndErrorCounters: herald_connections_opened_total,
// herald_connections_closed_total, herald_auth_failures_total and
// herald_protocol_errors_total count on AMQP, MQTT and STOMP, driven by
// amqp091-go, paho and go-stomp (and raw bytes for the violations).
func TestConnectionAndErrorCounters(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	amqpAddr, mqttAddr, stompAddr := s.AMQPAddr().String(), s.MQTTAddr().String(), s.Addr("stomp").String()

	// AMQP: one good login, one bad password, one wrong protocol header.
	good := s.dial(t)
	must(t, good.Close())
	if c, err := amqp.Dial("amqp://guest:wrong@" + amqpAddr + "/"); err == nil {
		c.Close()
		t.Fatal("bad AMQP password accepted")
	}
	rawExchange(t, amqpAddr, "HTTP/1.1")

	// MQTT: a good login, a bad password, a SUBSCRIBE before CONNECT.
	for _, pass := range []string{"guest", "wrong"} {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID("count-" + pass).
			SetUsername("guest").SetPassword(pass).SetAutoReconnect(false).SetProtocolVersion(4)) // no 3.1 retry
		tok := c.Connect()
		if !tok.WaitTimeout(waitTimeout) {
			t.Fatalf("mqtt login with %q: no CONNACK in %v", pass, waitTimeout)
		}
		if (tok.Error() == nil) != (pass == "guest") {
			t.Fatalf("mqtt login with %q: %v", pass, tok.Error())
		}
		c.Disconnect(0)
	}
	rawExchange(t, mqttAddr, "\x82\x06\x00\x01\x00\x01a\x00")

	// STOMP: a good login, a bad one, a SEND before CONNECT.
	sc, err := stomp.Dial("tcp", stompAddr, stomp.ConnOpt.Login("guest", "guest"))
	must(t, err)
	must(t, sc.Disconnect())
	if sc, err := stomp.Dial("tcp", stompAddr, stomp.ConnOpt.Login("guest", "wrong")); err == nil {
		sc.Disconnect()
		t.Fatal("bad STOMP password accepted")
	}
	rawExchange(t, stompAddr, "SEND\ndestination:/queue/a\n\n\x00")

	want := []string{
		`herald_connections_opened_total{protocol="amqp091"} 3`,
		`herald_auth_failures_total{protocol="amqp091"} 1`,
		`herald_protocol_errors_total{protocol="amqp091"} 1`,
		`herald_connections_opened_total{protocol="mqtt"} 3`,
		`herald_auth_failures_total{protocol="mqtt"} 1`,
		`herald_protocol_errors_total{protocol="mqtt"} 1`,
		`herald_connections_opened_total{protocol="stomp"} 3`,
		`herald_auth_failures_total{protocol="stomp"} 1`,
		`herald_protocol_errors_total{protocol="stomp"} 1`,
		// Every one of them has ended by now.
		`herald_connections_closed_total{protocol="amqp091"} 3`,
		`herald_connections_closed_total{protocol="mqtt"} 3`,
		`herald_connections_closed_total{protocol="stomp"} 3`,
	}
	var body string
	deadline := time.Now().Add(waitTimeout)
	for {
		_, b := httpDo(t, "GET", "http://"+s.HTTPAddr().String()+"/metrics", "guest", "guest", nil)
		body = string(b)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s:\n%s", missing, grepLines(body, "herald_"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawExchange sends bytes the server must refuse and reads until it closes
// the connection.
func rawExchange(t *testing.T, addr, data string) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	must(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte(data))
	must(t, err)
	must(t, nc.SetReadDeadline(time.Now().Add(waitTimeout)))
	buf := make([]byte, 512)
	for {
		if _, err := nc.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s kept the connection open after %q", addr, data)
			}
			return
		}
	}
}
