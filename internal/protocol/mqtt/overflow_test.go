package mqtt

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// A queue full with x-overflow reject-publish refuses the message: v5 gets
// PUBACK 0x97 (Quota exceeded), 3.1.1 (no negative PUBACK) loses the
// connection rather than a PUBACK that would claim the message is kept.
func TestPublishRefusedByFullQueue(t *testing.T) {
	e := startEnv(t, Config{})
	ch := e.amqp()
	if _, err := ch.QueueDeclare("full", false, false, false, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("full", "full.q", "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
	v, _ := e.v5(&paho.Connect{ClientID: "v5pub", CleanStart: true})
	if pr, err := v.Publish(ctx5(t), &paho.Publish{Topic: "full/q", QoS: 1, Payload: []byte("1")}); err != nil || pr.ReasonCode != 0 {
		t.Fatalf("first publish (fits): %+v, %v", pr, err)
	}
	pr, _ := v.Publish(ctx5(t), &paho.Publish{Topic: "full/q", QoS: 1, Payload: []byte("2")})
	if pr == nil || pr.ReasonCode != byte(packet.QuotaExceeded) {
		t.Fatalf("publish to a full reject-publish queue: PUBACK %+v, want reason 0x97", pr)
	}

	c := e.v3("v3pub", true)
	c.Publish("full/q", 1, false, "3") // its PUBACK never comes
	waitFor(t, "the 3.1.1 publisher's connection to close", func() bool { return !c.IsConnectionOpen() })

	q, err := ch.QueueDeclarePassive("full", false, false, false, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	if err != nil || q.Messages != 1 {
		t.Fatalf("queue holds %d messages (%v), want the first only", q.Messages, err)
	}
}
