package stomp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

func TestConnect(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	if c.Version() != stomp.V12 {
		t.Errorf("version %v", c.Version())
	}
	if !strings.HasPrefix(c.Session(), "session-") || !strings.HasPrefix(c.Server(), "Herald/") {
		t.Errorf("session %q server %q", c.Session(), c.Server())
	}
	for _, v := range []stomp.Version{stomp.V10, stomp.V11} {
		c := e.dial(stomp.ConnOpt.AcceptVersion(v))
		if c.Version() != v {
			t.Errorf("asked %v got %v", v, c.Version())
		}
	}
	// A named user, and the STOMP command instead of CONNECT.
	c2, err := stomp.Dial("tcp", e.addr, stomp.ConnOpt.Login("alice", "secret"), stomp.ConnOpt.UseStomp, stomp.ConnOpt.Logger(quietLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	c2.Disconnect()
}

func TestConnectRefused(t *testing.T) {
	e := newEnv(t, Config{})
	_, err := stomp.Dial("tcp", e.addr, stomp.ConnOpt.Login("guest", "wrong"), stomp.ConnOpt.Logger(quietLogger{}))
	if err == nil || !strings.Contains(err.Error(), "Bad CONNECT") {
		t.Fatalf("got %v", err)
	}
	r := e.raw()
	r.write("CONNECT\naccept-version:1.2\nlogin:alice\npasscode:nope\n\n\x00")
	f := r.read(false)
	if f.Command != "ERROR" || !strings.Contains(string(f.Body), "Access refused for user 'alice'") {
		t.Fatalf("got %v %q", f, f.Body)
	}
	r.expectClosed()
	r = e.raw()
	r.write("CONNECT\naccept-version:2.0\n\n\x00")
	// STOMP 1.2, Protocol Negotiation: the ERROR lists what the server speaks.
	if f := r.read(false); f.Command != "ERROR" || f.Value("message") != "Version mismatch" || f.Value("version") != "1.0,1.1,1.2" {
		t.Fatalf("got %v", f)
	}
	r.expectClosed()
	r = e.raw()
	r.write("SEND\ndestination:/queue/a\n\n\x00")
	if f := r.read(false); f.Command != "ERROR" || f.Value("message") != "Illegal command" {
		t.Fatalf("got %v", f)
	}
	r.expectClosed()
}

func TestQueueDestination(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	if err := c.Send("/queue/work", "text/plain", []byte("hello"), stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("correlation-id", "c1"), stomp.SendOpt.Header("x-custom", "v:1"),
		stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header("priority", "3")); err != nil {
		t.Fatal(err)
	}
	q := e.queue("work")
	if !q.Durable() || q.Exclusive() || q.AutoDelete() || q.Stats().Ready != 1 {
		t.Fatalf("queue %v %v %v %+v", q.Durable(), q.Exclusive(), q.AutoDelete(), q.Stats())
	}
	sub, err := c.Subscribe("/queue/work", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, sub)
	if string(m.Body) != "hello" || m.ContentType != "text/plain" || m.Destination != "/queue/work" {
		t.Errorf("message %q %q %q", m.Body, m.ContentType, m.Destination)
	}
	h := m.Header
	for k, want := range map[string]string{"correlation-id": "c1", "x-custom": "v:1", "persistent": "true", "priority": "3", "subscription": sub.Id(), "redelivered": "false"} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if h.Get("message-id") == "" || h.Get(frame.Ack) != "" {
		t.Errorf("auto mode: message-id %q ack %q", h.Get("message-id"), h.Get(frame.Ack))
	}
	unsubscribe(t, sub, c)
	if q.Stats().Consumers != 0 {
		t.Errorf("consumer left behind")
	}
}

func TestTopicDestination(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	s1, err := c.Subscribe("/topic/stocks.*", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Subscribe("/topic/stocks.#", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	// A receipt orders the subscriptions before the sends.
	if err := c.Send("/topic/stocks.ibm", "", []byte("a"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if err := c.Send("/topic/stocks.ibm.x", "", []byte("b"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, s1); string(m.Body) != "a" || m.Destination != "/topic/stocks.ibm" {
		t.Errorf("s1 got %q %q", m.Body, m.Destination)
	}
	for _, want := range []string{"a", "b"} {
		m := recv(t, s2)
		if string(m.Body) != want {
			t.Errorf("s2 got %q want %q", m.Body, want)
		}
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	sendN(t, c, "/queue/unsubscribe-barrier", 1) // counted from here on
	n := len(e.b.VHost("/").Queues())
	unsubscribe(t, s1, c)
	if got := len(e.b.VHost("/").Queues()); got != n-1 {
		t.Errorf("private queue not deleted on unsubscribe: %d -> %d", n, got)
	}
}

func TestExchangeAndAMQQueueDestinations(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	sub, err := c.Subscribe("/exchange/amq.direct/k1", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send("/exchange/amq.direct/k1", "", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); string(m.Body) != "x" || m.Destination != "/exchange/amq.direct/k1" {
		t.Errorf("got %q %q", m.Body, m.Destination)
	}
	// /amq/queue/ needs an existing queue.
	if _, err := e.b.VHost("/").DeclareQueue("existing", brokerDurable()); err != nil {
		t.Fatal(err)
	}
	sub2, err := c.Subscribe("/amq/queue/existing", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send("/amq/queue/existing", "", []byte("y"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub2); string(m.Body) != "y" {
		t.Errorf("got %q", m.Body)
	}
}

func TestDestinationErrors(t *testing.T) {
	e := newEnv(t, Config{})
	v := e.b.VHost("/")
	if _, err := v.DeclareQueue("someone-elses", broker.QueueOptions{Exclusive: true, Owner: e.b.NewOwner()}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.DeclareQueue("transient", broker.QueueOptions{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ dest, message, detail string }{
		{"/amq/queue/missing", "not_found", "NOT_FOUND - no queue 'missing' in vhost '/'"},
		{"/amq/queue/someone-elses", "resource_locked", "RESOURCE_LOCKED - cannot obtain exclusive access"},
		{"/exchange/nope/k", "not_found", "no exchange 'nope'"},
		{"/bogus/x", "Unknown destination", "'/bogus/x' is not a valid destination"},
		{"/queue/", "Unknown destination", "not a valid destination"},
	}
	for _, tc := range cases {
		c := e.dial()
		sub, err := c.Subscribe(tc.dest, stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-sub.C:
			if m == nil || m.Err == nil {
				t.Fatalf("%s: expected an error, got %v", tc.dest, m)
			}
			se, ok := m.Err.(*stomp.Error)
			if !ok || se.Message != tc.message || !strings.Contains(string(se.Frame.Body), tc.detail) {
				t.Errorf("%s: got %#v", tc.dest, m.Err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no ERROR", tc.dest)
		}
		if tc.message == "resource_locked" {
			continue // publishing into another's exclusive queue is allowed, as in AMQP
		}
		// SEND with a receipt reports the same error.
		c2 := e.dial()
		err = c2.Send(tc.dest, "", []byte("x"), stomp.SendOpt.Receipt)
		if err == nil || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("SEND %s: %v", tc.dest, err)
		}
	}
	// A durable subscription whose named queue exists with other flags.
	c := e.dial()
	sub, err := c.Subscribe("/topic/x", stomp.AckAuto, stomp.SubscribeOpt.Id("d"), stomp.SubscribeOpt.Header("durable", "true"), stomp.SubscribeOpt.Header("x-queue-name", "transient"))
	if err != nil {
		t.Fatal(err)
	}
	if m := <-sub.C; m == nil || m.Err == nil || !strings.Contains(m.Err.Error(), "precondition_failed") {
		t.Errorf("got %v", m)
	}
	// The errors closed only their own connections.
	c = e.dial()
	if err := c.Send("/queue/ok", "", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
}

func TestVHostAndQueueNaming(t *testing.T) {
	e := newEnv(t, Config{})
	e.b.AddVHost("v2")
	// A new vhost grants nobody anything (RabbitMQ): give guest access.
	if err := e.users.SetPermissions("guest", "v2", auth.AllPermissions); err != nil {
		t.Fatal(err)
	}
	c := e.dial(stomp.ConnOpt.Host("v2"))
	if err := c.Send("/queue/in-v2", "", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.VHost("v2").Queue("in-v2"); err != nil {
		t.Errorf("host header did not select vhost v2: %v", err)
	}
	if _, err := e.b.VHost("/").Queue("in-v2"); err == nil {
		t.Error("queue landed in the default vhost")
	}
	// x-queue-name names the private queue of an exchange subscription.
	c1 := e.dial()
	if _, err := c1.Subscribe("/exchange/amq.fanout", stomp.AckAuto, stomp.SubscribeOpt.Header("x-queue-name", "my-fanout-q")); err != nil {
		t.Fatal(err)
	}
	sendN(t, c1, "/queue/barrier", 1)
	q := e.queue("my-fanout-q")
	if !q.Exclusive() || !q.AutoDelete() || q.Durable() {
		t.Errorf("private queue flags: exclusive=%v auto-delete=%v durable=%v", q.Exclusive(), q.AutoDelete(), q.Durable())
	}
}

// TestSlowReader: a subscriber that stops reading fills its bounded outbox;
// the queue keeps the rest and delivery resumes once the client reads.
func TestSlowReader(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.raw()
	r.connect("")
	r.write("SUBSCRIBE\nid:s\ndestination:/queue/big\nreceipt:x\n\n\x00")
	if f := r.read(false); f.Command != "RECEIPT" {
		t.Fatalf("got %v", f)
	}
	p := e.dial()
	body := []byte(strings.Repeat("b", 100<<10))
	// 24 MiB: more than the outbox bound (4 MiB) plus what the kernel's
	// loopback socket buffers can absorb (they autotune to several MiB).
	const n = 240
	for i := range n {
		if err := p.Send("/queue/big", "", append([]byte(fmt.Sprint(i, ":")), body...)); err != nil {
			t.Fatal(err)
		}
	}
	sendN(t, p, "/queue/barrier", 1)
	if s := e.queue("big").Stats(); s.Ready == 0 {
		t.Errorf("everything left the queue for a client that is not reading: %+v", s)
	}
	_ = r.nc.SetDeadline(time.Now().Add(waitTimeout))
	for i := range n {
		m := r.read(false)
		if m.Command != "MESSAGE" || !strings.HasPrefix(string(m.Body), fmt.Sprint(i, ":")) {
			t.Fatalf("message %d: %v", i, m)
		}
	}
}

func TestQueueArguments(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	for i := range 5 {
		if err := c.Send("/queue/capped", "", []byte(fmt.Sprint(i)), stomp.SendOpt.Header("x-max-length", "2"), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.queue("capped").Stats(); s.Ready != 2 {
		t.Fatalf("x-max-length ignored: %+v", s)
	}
	sub, err := c.Subscribe("/topic/t", stomp.AckAuto, stomp.SubscribeOpt.Header("x-queue-name", "ttl-sub"), stomp.SubscribeOpt.Header("x-message-ttl", "60000"))
	if err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if got := e.queue("ttl-sub").Args()["x-message-ttl"]; got != int64(60000) {
		t.Errorf("x-message-ttl = %#v", got)
	}
	_ = sub
	r := e.raw()
	r.connect("")
	r.write("SEND\ndestination:/queue/bad-args\nx-max-length:lots\n\n\x00")
	if f := r.read(false); f.Command != "ERROR" || f.Value("message") != "Invalid header" {
		t.Errorf("got %v", f)
	}
}
