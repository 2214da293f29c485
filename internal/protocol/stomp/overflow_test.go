package stomp

import (
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3"

	"github.com/heraldmq/herald/internal/broker"
)

// A SEND that a full reject-publish queue refuses gets an ERROR frame (as
// RabbitMQ's STOMP plugin answers a nack), not a RECEIPT.
func TestSendRefusedByFullQueue(t *testing.T) {
	e := newEnv(t, Config{})
	if _, err := e.b.VHost("/").DeclareQueue("full", broker.QueueOptions{Args: broker.Table{"x-max-length": int64(1), "x-overflow": "reject-publish"}}); err != nil {
		t.Fatal(err)
	}
	c := e.dial()
	if err := c.Send("/amq/queue/full", "text/plain", []byte("1"), stomp.SendOpt.Receipt); err != nil {
		t.Fatalf("first SEND (fits): %v", err)
	}
	err := c.Send("/amq/queue/full", "text/plain", []byte("2"), stomp.SendOpt.Receipt)
	if err == nil || !strings.Contains(err.Error(), "resource_error") {
		t.Fatalf("SEND to the full queue: %v, want ERROR resource_error", err)
	}
	if n := e.queue("full").Stats().Ready; n != 1 {
		t.Fatalf("queue holds %d messages, want 1", n)
	}
}
