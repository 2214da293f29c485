package console_test

import (
	"testing"

	"github.com/heraldmq/herald/internal/broker"
)

type nullSink struct{}

func (nullSink) Deliver(broker.Delivery) bool { return true }
func (nullSink) Cancelled(*broker.Consumer)   {}

// serveCalcInstance makes one instance of service "calc" and two calls
// to it, one answered OK and one NOT_FOUND, for the Services page.
func serveCalcInstance(t *testing.T, b *broker.Broker) {
	t.Helper()
	v := b.VHost("/")
	q, err := v.DeclareQueue("rpc.calc", broker.QueueOptions{AutoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	args := broker.Table{"x-service-id": "calc-1", "x-service-version": "1.0.0", "x-service-endpoints": []any{"Add"}}
	c, err := q.Consume(broker.ConsumerOptions{Tag: "calc", NoAck: true, Args: args, Sink: nullSink{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Cancel)
	p := v.Publisher()
	for i, status := range []string{"OK", "NOT_FOUND"} {
		corr := string(rune('a' + i))
		if _, err := p.Publish(&broker.Message{RoutingKey: "rpc.calc", Properties: broker.Properties{CorrelationID: corr, ReplyTo: "caller", Type: "calc.Add"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Publish(&broker.Message{RoutingKey: "caller", Properties: broker.Properties{CorrelationID: corr, Headers: broker.Table{"x-rpc-status": status}}}); err != nil {
			t.Fatal(err)
		}
	}
}
