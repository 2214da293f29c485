package test

import (
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestSTOMPAndAMQP: STOMP SEND reaches an AMQP queue consumer; an AMQP
// publish to amq.topic reaches a STOMP /topic/ subscriber.
func TestSTOMPAndAMQP(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	sc, sub := stompSubscriber(t, s, "/topic/news.*")
	ch := mustChannel(t, s.dial(t))
	if _, err := ch.QueueDeclare("from-stomp", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	in := mustConsume(t, ch, "from-stomp", "", true)
	if err := sc.Send("/queue/from-stomp", "text/plain", []byte("hello amqp"), stomp.SendOpt.Header("x-trace", "t1")); err != nil {
		t.Fatal(err)
	}
	d := recv(t, in)
	if string(d.Body) != "hello amqp" || d.ContentType != "text/plain" || d.Headers["x-trace"] != "t1" {
		t.Errorf("amqp got %q %q %v", d.Body, d.ContentType, d.Headers)
	}
	mustPublish(t, ch, "amq.topic", "news.sport", amqp.Publishing{Body: []byte("goal"), ContentType: "text/plain"})
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != "goal" {
			t.Errorf("stomp got %v %q", m.Err, m.Body)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the AMQP publish did not reach the STOMP subscriber")
	}
}

// stompSubscriber dials s's STOMP port as guest and subscribes to dest
// (auto ack); the connection is closed when the test ends.
func stompSubscriber(t *testing.T, s *testServer, dest string) (*stomp.Conn, *stomp.Subscription) {
	t.Helper()
	sc, err := stomp.Dial("tcp", s.STOMPAddr().String(), stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Host("/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Disconnect() })
	sub, err := sc.Subscribe(dest, stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	return sc, sub
}
