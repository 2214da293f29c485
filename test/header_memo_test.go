package test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"
)

// TestHeaderTablesRepeatedAcrossProtocols: the AMQP adapter shares a
// channel's unchanged header table between consecutive publishes and
// re-uses its encoding on delivery; a run of repeated, changed and absent
// tables must still reach an AMQP consumer and a STOMP subscriber each
// exactly as published.
func TestHeaderTablesRepeatedAcrossProtocols(t *testing.T) {
	t.Parallel()
	s := startServer(t, withAllProtocols())
	_, sub := stompSubscriber(t, s, "/topic/hdr.memo")
	ch := mustChannel(t, s.dial(t))
	// SUBSCRIBE is not acknowledged: probe until the subscription is live.
	live := false
	for deadline := time.Now().Add(waitTimeout); !live && time.Now().Before(deadline); {
		mustPublish(t, ch, "amq.topic", "hdr.memo", amqp.Publishing{Body: []byte("probe")})
		select {
		case m := <-sub.C:
			live = m.Err == nil && string(m.Body) == "probe"
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !live {
		t.Fatal("the STOMP subscription never received a probe")
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "hdr.#", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	in := mustConsume(t, ch, q.Name, "", true)

	ok := amqp.Table{"x-rpc-status": "OK", "n": int32(7)}
	failed := amqp.Table{"x-rpc-status": "INTERNAL", "x-rpc-error": "boom"}
	sent := []amqp.Table{ok, ok, failed, ok, nil, {"x-rpc-status": "OK", "n": int32(8)}, ok}
	for i, h := range sent {
		mustPublish(t, ch, "amq.topic", "hdr.memo", amqp.Publishing{
			Body: []byte(fmt.Sprint(i)), Headers: h, CorrelationId: fmt.Sprint("c", i), ContentType: "text/plain",
		})
	}
	for i, h := range sent {
		d := recv(t, in)
		if string(d.Body) != fmt.Sprint(i) || d.CorrelationId != fmt.Sprint("c", i) || d.ContentType != "text/plain" {
			t.Errorf("amqp message %d: body %q correlation %q type %q", i, d.Body, d.CorrelationId, d.ContentType)
		}
		if len(h) == 0 && len(d.Headers) == 0 {
			continue
		}
		if !reflect.DeepEqual(d.Headers, h) {
			t.Errorf("amqp message %d: headers %v, want %v", i, d.Headers, h)
		}
	}
	for i := 0; i < len(sent); {
		var m *stomp.Message
		select {
		case m = <-sub.C:
		case <-time.After(waitTimeout):
			t.Fatalf("stomp message %d did not arrive", i)
		}
		if m.Err != nil {
			t.Fatal(m.Err)
		}
		if string(m.Body) == "probe" { // a late answer to the probing above
			continue
		}
		if string(m.Body) != fmt.Sprint(i) {
			t.Errorf("stomp message %d: body %q", i, m.Body)
		}
		for _, k := range []string{"x-rpc-status", "x-rpc-error"} {
			want, _ := sent[i][k].(string)
			if got := m.Header.Get(k); got != want {
				t.Errorf("stomp message %d: %s = %q, want %q", i, k, got, want)
			}
		}
		i++
	}
}
