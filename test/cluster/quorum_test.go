package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func (nd *node) amqpURL() string {
	return "amqp://guest:guest@" + nd.amqpAddress() + "/"
}

// TestClusterQuorumAnyNode: messages published with confirms through one
// node to a quorum queue are consumed through another, in order; the
// queue reports its leader, members and online nodes.
func TestClusterQuorumAnyNode(t *testing.T) {
	h := newHarness(t, 3)
	// x-quorum-initial-group-size is accepted: the members are all nodes.
	if err := h.nodes[0].declareQueue("qq", map[string]any{"x-queue-type": "quorum", "x-quorum-initial-group-size": 3}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range h.nodes {
		eventually(t, 10*time.Second, nd.name+" has qq", func() error { return nd.hasQueue("qq") })
	}
	pc, err := amqp.Dial(h.nodes[0].amqpURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cc, err := amqp.Dial(h.nodes[2].amqpURL())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cch, err := cc.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := cch.Qos(10, 0, false); err != nil {
		t.Fatal(err)
	}
	msgs, err := cch.Consume("qq", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	pch, err := pc.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := pch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	const n = 500
	var dcs []*amqp.DeferredConfirmation
	for i := range n {
		dc, err := pch.PublishWithDeferredConfirmWithContext(context.Background(), "", "qq", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: fmt.Appendf(nil, "m%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for i, dc := range dcs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil || !ok {
			t.Fatalf("confirm %d: %v %v", i, ok, err)
		}
	}
	for i := range n {
		select {
		case m := <-msgs:
			if string(m.Body) != fmt.Sprintf("m%d", i) || m.Redelivered {
				t.Fatalf("got %q (redelivered %v), want m%d", m.Body, m.Redelivered, i)
			}
			if err := m.Ack(false); err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not delivered", i)
		}
	}
	var q struct {
		Type    string   `json:"type"`
		Leader  string   `json:"leader"`
		Members []string `json:"members"`
		Online  []string `json:"online"`
	}
	code, b, err := h.nodes[1].api("GET", "/api/queues/%2F/qq", nil)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET queue: %d %s %v", code, b, err)
	}
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	slices.Sort(q.Members)
	slices.Sort(q.Online)
	if q.Type != "quorum" || q.Leader == "" || !slices.Equal(q.Members, []string{"n1", "n2", "n3"}) || !slices.Equal(q.Online, q.Members) {
		t.Fatalf("queue: %s", b)
	}
}
