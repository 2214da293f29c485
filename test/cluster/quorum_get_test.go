package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestClusterQuorumGet: basic.get on a quorum queue, through the leader
// and through a follower: get-ok with the count left, ack, no-ack,
// get-empty, and a get left unacked comes back redelivered when its
// channel closes. The HTTP API's get takes the same path.
func TestClusterQuorumGet(t *testing.T) {
	h := newHarness(t, 3)
	leader := h.waitLeader(nil, 10*time.Second)
	follower := h.nodes[0]
	if follower == leader {
		follower = h.nodes[1]
	}
	if err := leader.declareQueue("qg", map[string]any{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range h.nodes {
		eventually(t, 10*time.Second, nd.name+" has qg", func() error { return nd.hasQueue("qg") })
	}
	publish := func(nd *node, bodies ...string) {
		t.Helper()
		c, err := amqp.Dial(nd.amqpURL())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		for _, b := range bodies {
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "qg", false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(b)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			ok, err := dc.WaitContext(ctx)
			cancel()
			if err != nil || !ok {
				t.Fatalf("confirm of %s: %v %v", b, ok, err)
			}
		}
	}
	for _, nd := range []*node{leader, follower} {
		t.Run(nd.name, func(t *testing.T) {
			// Published through another node than the one that gets.
			other := h.nodes[2]
			if other == nd {
				other = h.nodes[1]
			}
			publish(other, "a-"+nd.name, "b-"+nd.name, "c-"+nd.name)
			c, err := amqp.Dial(nd.amqpURL())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ch, err := c.Channel()
			if err != nil {
				t.Fatal(err)
			}
			m, ok, err := ch.Get("qg", false)
			if err != nil || !ok || string(m.Body) != "a-"+nd.name || m.MessageCount != 2 || m.Redelivered {
				t.Fatalf("get: %v %v %q count %d redelivered %v", ok, err, m.Body, m.MessageCount, m.Redelivered)
			}
			if err := m.Ack(false); err != nil {
				t.Fatal(err)
			}
			m, ok, err = ch.Get("qg", true)
			if err != nil || !ok || string(m.Body) != "b-"+nd.name || m.MessageCount != 1 {
				t.Fatalf("no-ack get: %v %v %q count %d", ok, err, m.Body, m.MessageCount)
			}
			// A get left unacked on a channel that closes comes back.
			ch2, err := c.Channel()
			if err != nil {
				t.Fatal(err)
			}
			m, ok, err = ch2.Get("qg", false)
			if err != nil || !ok || string(m.Body) != "c-"+nd.name || m.MessageCount != 0 {
				t.Fatalf("get on the second channel: %v %v %q count %d", ok, err, m.Body, m.MessageCount)
			}
			if _, ok, err := ch.Get("qg", false); err != nil || ok {
				t.Fatalf("get with the only message out: %v %v (want get-empty)", ok, err)
			}
			if err := ch2.Close(); err != nil {
				t.Fatal(err)
			}
			var back amqp.Delivery
			eventually(t, 10*time.Second, "the unacked get returned", func() error {
				m, ok, err := ch.Get("qg", false)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					return fmt.Errorf("get-empty")
				}
				back = m
				return nil
			})
			if string(back.Body) != "c-"+nd.name || !back.Redelivered {
				t.Fatalf("returned get: %q redelivered %v", back.Body, back.Redelivered)
			}
			if err := back.Ack(false); err != nil {
				t.Fatal(err)
			}
			// A get is a round trip through the log: its latency, logged.
			const rounds = 100
			start := time.Now()
			for range rounds {
				if _, ok, err := ch.Get("qg", false); err != nil || ok {
					t.Fatalf("get on the drained queue: %v %v (want get-empty)", ok, err)
				}
			}
			t.Logf("get-empty on %s (leader %s): %v per get", nd.name, leader.name, time.Since(start)/rounds)
		})
	}
	// The HTTP API's get (requeue) on a follower.
	publish(leader, "h")
	code, b, err := follower.api("POST", "/api/queues/%2F/qg/get", map[string]any{"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"})
	if err != nil || code != http.StatusOK {
		t.Fatalf("HTTP get: %d %s %v", code, b, err)
	}
	var got []struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(b, &got); err != nil || len(got) != 1 || got[0].Payload != "h" {
		t.Fatalf("HTTP get: %s %v", b, err)
	}
	eventually(t, 10*time.Second, "the HTTP get requeued", func() error {
		code, b, err := leader.api("GET", "/api/queues/%2F/qg", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET queue: %d %s %v", code, b, err)
		}
		var q struct {
			Ready   int `json:"messages_ready"`
			Unacked int `json:"messages_unacknowledged"`
		}
		if err := json.Unmarshal(b, &q); err != nil {
			return err
		}
		if q.Ready != 1 || q.Unacked != 0 {
			return fmt.Errorf("ready %d unacked %d", q.Ready, q.Unacked)
		}
		return nil
	})
}
