package stomp

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

// TestTempQueueRPC: a STOMP client calls an amqp091-go RPC server, which
// answers to the rewritten reply-to through the default exchange.
func TestTempQueueRPC(t *testing.T) {
	e := newEnv(t, Config{})
	ac := e.amqpConn()
	ch, err := ac.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare("rpc", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	reqs, err := ch.Consume("rpc", "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d := range reqs {
			_ = ch.PublishWithContext(context.Background(), "", d.ReplyTo, false, false, amqp.Publishing{
				CorrelationId: d.CorrelationId, Body: []byte(strings.ToUpper(string(d.Body))),
			})
		}
	}()
	t.Cleanup(func() {
		_ = ac.Close() // ends the range over reqs
		wg.Wait()
	})

	c := e.dial()
	// go-stomp's way of listening on a temp queue: a local subscription
	// keyed by the reply-to name, matching the server's implicit one.
	replies, err := c.Subscribe("/temp-queue/answers", stomp.AckAuto, stomp.SubscribeOpt.Header("reply-to", "/temp-queue/answers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, word := range []string{"ping", "pong"} {
		if err := c.Send("/amq/queue/rpc", "text/plain", []byte(word), stomp.SendOpt.Header("reply-to", "/temp-queue/answers"), stomp.SendOpt.Header("correlation-id", word)); err != nil {
			t.Fatal(err)
		}
		m := recv(t, replies)
		if string(m.Body) != strings.ToUpper(word) || m.Header.Get("correlation-id") != word || m.Header.Get("subscription") != "/temp-queue/answers" {
			t.Fatalf("reply %q %v", m.Body, m.Header)
		}
	}
	// The temp queue is private and goes with the session.
	var temp string
	for _, q := range e.b.VHost("/").Queues() {
		if q.Exclusive() && strings.HasPrefix(q.Name(), "amq.gen-") {
			temp = q.Name()
		}
	}
	if temp == "" {
		t.Fatal("no temp queue")
	}
	c.Disconnect()
	waitFor(t, "temp queue deletion", func() bool {
		_, err := e.b.VHost("/").Queue(temp)
		return err != nil
	})
}

// TestReplyToSeenBySTOMP: a STOMP server answering a STOMP caller uses the
// /reply-queue/ address it finds in reply-to.
func TestReplyQueueBetweenSTOMPClients(t *testing.T) {
	e := newEnv(t, Config{})
	server := e.dial()
	reqs, err := server.Subscribe("/queue/svc", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	caller := e.dial()
	replies, err := caller.Subscribe("/temp-queue/r", stomp.AckAuto, stomp.SubscribeOpt.Header("reply-to", "/temp-queue/r"))
	if err != nil {
		t.Fatal(err)
	}
	if err := caller.Send("/queue/svc", "", []byte("q"), stomp.SendOpt.Header("reply-to", "/temp-queue/r")); err != nil {
		t.Fatal(err)
	}
	req := recv(t, reqs)
	rt := req.Header.Get("reply-to")
	if !strings.HasPrefix(rt, "/reply-queue/amq.gen-") {
		t.Fatalf("reply-to %q", rt)
	}
	if err := server.Send(rt, "", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, replies); string(m.Body) != "a" {
		t.Fatalf("got %q", m.Body)
	}
}

func TestCrossProtocol(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	ac := e.amqpConn()
	ch, err := ac.Channel()
	if err != nil {
		t.Fatal(err)
	}

	// AMQP publish -> STOMP /topic/ subscriber.
	sub, err := c.Subscribe("/topic/orders.*", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1) // the subscription is bound
	err = ch.PublishWithContext(context.Background(), "amq.topic", "orders.new", false, false, amqp.Publishing{
		ContentType: "application/json", CorrelationId: "c-7", MessageId: "m-7", Priority: 4, ReplyTo: "callback",
		DeliveryMode: amqp.Persistent, Headers: amqp.Table{"x-n": int32(5), "x-s": "v"}, Body: []byte(`{"id":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, sub)
	want := map[string]string{
		"destination": "/topic/orders.new", "content-type": "application/json", "correlation-id": "c-7",
		"amqp-message-id": "m-7", "priority": "4", "persistent": "true", "reply-to": "/reply-queue/callback",
		"x-n": "5", "x-s": "v", "content-length": "8",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if string(m.Body) != `{"id":1}` {
		t.Errorf("body %q", m.Body)
	}
	if err := c.Ack(m); err != nil {
		t.Fatal(err)
	}

	// STOMP SEND -> AMQP queue consumer.
	if _, err := ch.QueueDeclare("from-stomp", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume("from-stomp", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send("/queue/from-stomp", "text/plain", []byte("hi amqp"),
		stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header("correlation-id", "k1"),
		stomp.SendOpt.Header("reply-to", "/queue/back"), stomp.SendOpt.Header("expiration", "60000"),
		stomp.SendOpt.Header("x-app", "demo"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-ds:
		if string(d.Body) != "hi amqp" || d.ContentType != "text/plain" || d.DeliveryMode != amqp.Persistent ||
			d.CorrelationId != "k1" || d.ReplyTo != "/queue/back" || d.Expiration != "60000" || d.Headers["x-app"] != "demo" {
			t.Errorf("AMQP delivery %+v", d)
		}
		if _, ok := d.Headers["destination"]; ok {
			t.Errorf("STOMP header leaked into AMQP headers: %v", d.Headers)
		}
		_ = d.Ack(false)
	case <-time.After(waitTimeout):
		t.Fatal("no AMQP delivery")
	}
}

// TestWebSocket drives STOMP over WebSocket with coder/websocket as the
// client: one frame per text message, heart-beats as "\n".
func TestWebSocket(t *testing.T) {
	e := newEnv(t, Config{Heartbeat: 50 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(e.h.ServeWebSocket), BaseContext: func(net.Listener) context.Context { return e.ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	url := "ws://" + ln.Addr().String() + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// Without a subprotocol the server still speaks STOMP (RabbitMQ does).
	plain, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Write(ctx, websocket.MessageText, []byte("CONNECT\naccept-version:1.1\nlogin:guest\npasscode:guest\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := plain.Read(ctx); err != nil || !strings.HasPrefix(string(data), "CONNECTED\nversion:1.1\n") {
		t.Fatalf("no-subprotocol CONNECT: %q %v", data, err)
	}
	plain.Close(websocket.StatusNormalClosure, "")

	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if ws.Subprotocol() != "v12.stomp" {
		t.Fatalf("subprotocol %q", ws.Subprotocol())
	}
	write := func(s string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	// read returns the next message as a frame, nil for a heart-beat.
	read := func() *frame.Frame {
		t.Helper()
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("message type %v", typ)
		}
		if string(data) == "\n" {
			return nil
		}
		fr := frame.NewReader(strings.NewReader(string(data)), frame.Limits{})
		fr.SetVersion(frame.V12)
		f, err := fr.Read()
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		if _, err := fr.Read(); err == nil {
			t.Fatalf("more than one frame in a message: %q", data)
		}
		return f
	}
	next := func() *frame.Frame {
		t.Helper()
		for {
			if f := read(); f != nil {
				return f
			}
		}
	}
	write("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,50\n\n\x00")
	if f := next(); f.Command != "CONNECTED" || f.Value("version") != "1.2" {
		t.Fatalf("got %v", f)
	}
	// A frame may also arrive split over two messages.
	write("SUBSCRIBE\nid:0\ndestination:/topic/ws\n")
	write("receipt:r\n\n\x00")
	if f := next(); f.Command != "RECEIPT" {
		t.Fatalf("got %v", f)
	}
	write("SEND\ndestination:/topic/ws\n\none\x00")
	write("SEND\ndestination:/topic/ws\n\ntwo\x00")
	for _, want := range []string{"one", "two"} {
		if f := next(); f.Command != "MESSAGE" || string(f.Body) != want {
			t.Fatalf("got %v %q", f, f.Body)
		}
	}
	// Heart-beats arrive as "\n" messages when idle.
	for read() != nil {
	}
	// Shutdown reaches WebSocket clients too.
	e.cancel()
	if f := next(); f.Command != "ERROR" || f.Value("message") != "server shutting down" {
		t.Fatalf("got %v", f)
	}
}
