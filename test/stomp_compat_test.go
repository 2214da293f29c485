package test

import (
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/heraldmq/herald/internal/app"
)

// TestSTOMPVersionMismatchListsVersions: a CONNECT accepting only versions
// Herald does not speak gets an ERROR whose version header lists the ones
// it does (STOMP 1.2, "Protocol Negotiation"), read with go-stomp's frame
// codec; then the connection closes.
func TestSTOMPVersionMismatchListsVersions(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.STOMPAddr = "127.0.0.1:0" })
	nc, err := net.Dial("tcp", s.Addr("stomp").String())
	must(t, err)
	defer nc.Close()
	must(t, frame.NewWriter(nc).Write(frame.New(frame.CONNECT, frame.AcceptVersion, "2.0,2.1",
		frame.Host, "/", frame.Login, "guest", frame.Passcode, "guest")))
	must(t, nc.SetReadDeadline(time.Now().Add(waitTimeout)))
	r := frame.NewReader(nc)
	f, err := r.Read()
	must(t, err)
	if f.Command != frame.ERROR || f.Header.Get(frame.Message) != "Version mismatch" || f.Header.Get(frame.Version) != "1.0,1.1,1.2" {
		t.Fatalf("got %s %v %q", f.Command, f.Header, f.Body)
	}
	if f, err := r.Read(); err == nil {
		t.Fatalf("connection still open after the ERROR: %v", f)
	}
}

// TestMQTTRepeatedUserPropertyReachesSTOMP: a repeated MQTT 5 user
// property (an array header in the core) reaches a go-stomp subscriber as
// the header repeated, in order, so a STOMP 1.2 reader that keeps one value
// keeps the first.
func TestMQTTRepeatedUserPropertyReachesSTOMP(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *app.Config) { c.STOMPAddr, c.MQTTAddr = "127.0.0.1:0", "127.0.0.1:0" })
	sc, err := stomp.Dial("tcp", s.Addr("stomp").String(), stomp.ConnOpt.Login("guest", "guest"))
	must(t, err)
	defer sc.Disconnect()
	sub, err := sc.Subscribe("/topic/rep.*", stomp.AckAuto)
	must(t, err)
	// A receipt-confirmed subscription is bound before the publish.
	must(t, sc.Send("/topic/rep.probe", "text/plain", []byte("probe"), stomp.SendOpt.Receipt))
	if m := <-sub.C; m.Err != nil || string(m.Body) != "probe" {
		t.Fatalf("probe: %v", m.Err)
	}
	pub, _ := v5Subscriber(t, s.MQTTAddr().String(), "rep-pub")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "rep/a", QoS: 1, Payload: []byte("x"), Properties: &paho.PublishProperties{
		User: paho.UserProperties{{Key: "k1", Value: "v1"}, {Key: "k1", Value: "v2"}, {Key: "trace", Value: "abc"}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil {
			t.Fatal(m.Err)
		}
		if got := m.Header.GetAll("k1"); !reflect.DeepEqual(got, []string{"v1", "v2"}) || m.Header.Get("trace") != "abc" {
			t.Fatalf("STOMP headers %v", m.Header)
		}
	case <-timeAfterWait():
		t.Fatal("no STOMP delivery")
	}
}
