package test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/pkg/rpc"
)

// TestRPCSDKInteropAMQP091: the SDK speaks AMQP with its own client
// (pkg/rpc/internal/amqpc); the convention is the contract, so a service
// written with amqp091-go answers the SDK's client, and an amqp091-go
// caller using direct reply-to calls an SDK service. Bodies larger than
// a frame cross in several body frames both ways.
func TestRPCSDKInteropAMQP091(t *testing.T) {
	t.Parallel()
	s := startServer(t)

	// An amqp091-go instance of "interop": Echo answers the body, anything
	// else NOT_FOUND; it checks the request carries what the convention says.
	svc := mustChannel(t, s.dial(t))
	if err := svc.Qos(4, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.QueueDeclare("rpc.interop", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	requests := mustConsume(t, svc, "rpc.interop", "", false)
	ctx := ctxTimeout(t, 20*time.Second)
	go func() {
		for d := range requests {
			status, msg, body := "OK", "", d.Body
			_, hasDeadline := d.Headers[rpc.HeaderDeadline].(int64)
			switch {
			case !hasDeadline || d.Expiration == "" || d.CorrelationId == "" || d.ContentType != rpc.ContentTypeJSON:
				status, msg, body = "INVALID_ARGUMENT", "request lacks the convention's properties", nil
			case d.Type != "interop.Echo":
				status, msg, body = "NOT_FOUND", "no "+d.Type, nil
			}
			h := amqp.Table{rpc.HeaderStatus: status}
			if msg != "" {
				h[rpc.HeaderError] = msg
			}
			_ = svc.PublishWithContext(ctx, "", d.ReplyTo, false, false, amqp.Publishing{
				CorrelationId: d.CorrelationId, ContentType: d.ContentType, Headers: h, Body: body})
			_ = d.Ack(false)
		}
	}()

	c := newRPCClient(t, rpc.ClientConfig{ConnConfig: rpc.ConnConfig{URL: s.URL}})
	big := strings.Repeat("x", 300_000) // several frames at the default frame_max
	var out string
	if err := c.Call(ctx, "interop.Echo", big, &out); err != nil || out != big {
		t.Fatalf("echo through an amqp091-go service: %v (%d bytes back)", err, len(out))
	}
	e := wantCode(t, c.Call(ctx, "interop.Other", "x", &out), rpc.NotFound)
	if e.Message != "no interop.Other" {
		t.Fatalf("message %q", e.Message)
	}

	// An amqp091-go caller with direct reply-to, calling an SDK service.
	startGreeter(t, s.URL, "interop2", &greeterSvc{}, 2)
	caller := mustChannel(t, s.dial(t))
	replies := mustConsume(t, caller, "amq.rabbitmq.reply-to", "", true)
	call := func(id, typ string, body []byte) amqp.Delivery {
		t.Helper()
		mustPublish(t, caller, "", "rpc.interop2", amqp.Publishing{Type: typ, ReplyTo: "amq.rabbitmq.reply-to",
			CorrelationId: id, ContentType: rpc.ContentTypeJSON, Expiration: "10000",
			Headers: amqp.Table{rpc.HeaderDeadline: time.Now().Add(10 * time.Second).UnixMilli()}, Body: body})
		d := recvN(t, replies, 1)[0]
		if d.CorrelationId != id {
			t.Fatalf("reply to %q, want %q", d.CorrelationId, id)
		}
		return d
	}
	name := strings.Repeat("n", 200_000)
	d := call("a", "interop2.Greet", []byte(`{"name":"`+name+`"}`))
	if d.Headers[rpc.HeaderStatus] != "OK" || !bytes.Contains(d.Body, []byte("Hello, "+name+"!")) {
		t.Fatalf("greet: %v, %d bytes", d.Headers, len(d.Body))
	}
	d = call("b", "interop2.Greet", []byte(`{}`))
	if d.Headers[rpc.HeaderStatus] != "INVALID_ARGUMENT" || d.Headers[rpc.HeaderError] != "name is required" {
		t.Fatalf("invalid: %v", d.Headers)
	}
	d = call("c", "interop2.Nope", []byte(`{}`))
	if d.Headers[rpc.HeaderStatus] != "UNIMPLEMENTED" {
		t.Fatalf("unknown method: %v", d.Headers)
	}
}
