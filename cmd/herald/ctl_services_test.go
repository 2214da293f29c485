package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldmq/herald/internal/broker"
)

type nullSink struct{}

func (nullSink) Deliver(broker.Delivery) bool { return true }
func (nullSink) Cancelled(*broker.Consumer)   {}

func TestCtlServices(t *testing.T) {
	srv, url := startHerald(t, "")
	v := srv.Broker().VHost("/")
	q, err := v.DeclareQueue("rpc.calc", broker.QueueOptions{AutoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	args := broker.Table{"x-service-name": "calc", "x-service-version": "2.0.1", "x-service-id": "calc-1",
		"x-service-endpoints": []any{"Add"}, "x-service-metadata": broker.Table{"zone": "b"}}
	c, err := q.Consume(broker.ConsumerOptions{Tag: "t", NoAck: true, Args: args, Sink: nullSink{}})
	if err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	if _, err := p.Publish(&broker.Message{RoutingKey: "rpc.calc", Properties: broker.Properties{CorrelationID: "1", ReplyTo: "me", Type: "calc.Add"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Publish(&broker.Message{RoutingKey: "me", Properties: broker.Properties{CorrelationID: "1", Headers: broker.Table{"x-rpc-status": "NOT_FOUND"}}}); err != nil {
		t.Fatal(err)
	}
	out := mustCtl(t, url, "list", "services")
	if !strings.Contains(out, "error_rate") || !strings.Contains(out, "calc") || !strings.Contains(out, "NOT_FOUND=1") || !strings.Contains(out, "100.0%") {
		t.Fatalf("list services:\n%s", out)
	}
	out = mustCtl(t, url, "describe", "service", "calc")
	for _, want := range []string{"service      calc", "1 delivered", "calc-1", "2.0.1", "zone=b", "Add"} {
		if !strings.Contains(out, want) {
			t.Fatalf("describe service lacks %q:\n%s", want, out)
		}
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(mustCtl(t, url, "describe", "service", "calc", "--json")), &doc); err != nil || doc["name"] != "calc" {
		t.Fatalf("--json: %v %v", doc, err)
	}
	c.Cancel()
	if code, _, errOut := ctl(t, url, "describe", "service", "calc"); code != 1 || !strings.Contains(errOut, "calc") {
		t.Fatalf("a service gone: exit %d %s", code, errOut)
	}
}
