package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// publish is `herald ctl publish EXCHANGE ROUTING_KEY [PAYLOAD]`: POST
// /api/exchanges/{vhost}/{exchange}/publish. Without PAYLOAD (or with
// "-") the body is standard input, sent in base64 so any bytes pass.
func (c *ctlClient) publish(w []string) error {
	exchange, key := w[0], w[1]
	var payload []byte
	if len(w) == 3 && w[2] != "-" {
		payload = []byte(w[2])
	} else {
		var err error
		if payload, err = io.ReadAll(io.LimitReader(c.in, 256<<20)); err != nil {
			return fmt.Errorf("reading the payload from standard input: %w", err)
		}
	}
	body := map[string]any{"routing_key": key, "payload": string(payload), "payload_encoding": "string", "properties": map[string]any{}}
	if !utf8.Valid(payload) {
		body["payload"], body["payload_encoding"] = base64.StdEncoding.EncodeToString(payload), "base64"
	}
	if c.o.more.properties != "" {
		var props map[string]any
		if err := json.Unmarshal([]byte(c.o.more.properties), &props); err != nil {
			return fmt.Errorf("--properties is not a JSON object: %w", err)
		}
		body["properties"] = props
	}
	var r struct {
		Routed bool `json:"routed"`
	}
	if err := c.call("POST", "/api/exchanges/"+seg(c.o.vhost)+"/"+seg(exchangeSeg(exchange))+"/publish", body, &r); err != nil {
		return err
	}
	if c.o.json {
		return c.printJSON(r)
	}
	if !r.Routed {
		fmt.Fprintf(c.out, "published to %s, but NOT routed: no queue is bound for routing key %q\n", exchangeSeg(exchange), key)
		return nil
	}
	fmt.Fprintf(c.out, "published to %s with routing key %q\n", exchangeSeg(exchange), key)
	return nil
}

// get is `herald ctl get queue NAME`: POST /api/queues/{vhost}/{name}/get.
// By default (ack_requeue_true) the messages go back to the queue, as
// rabbitmqadmin's get does; --ackmode ack_requeue_false takes them.
func (c *ctlClient) get(queue string) error {
	n := c.o.n
	if n <= 0 {
		n = 1
	}
	switch c.o.more.ackmode {
	case "ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false":
	default:
		return usageError(fmt.Sprintf("--ackmode must be ack_requeue_true, ack_requeue_false, reject_requeue_true or reject_requeue_false, not %q", c.o.more.ackmode))
	}
	var msgs []map[string]any
	if err := c.call("POST", "/api/queues/"+seg(c.o.vhost)+"/"+seg(queue)+"/get",
		map[string]any{"count": n, "ackmode": c.o.more.ackmode, "encoding": "auto"}, &msgs); err != nil {
		return err
	}
	if !c.o.json && len(msgs) == 0 {
		fmt.Fprintf(c.out, "queue %s has no ready message\n", queue)
		return nil
	}
	return c.table(msgs, []string{"exchange", "routing_key", "redelivered", "message_count", "payload_bytes", "payload"})
}
