package stomp

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"
)

func sendN(t *testing.T, c *stomp.Conn, dest string, n int) {
	t.Helper()
	for i := range n {
		if err := c.Send(dest, "", []byte(fmt.Sprint(i)), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAckClientCumulative(t *testing.T) {
	for _, v := range []stomp.Version{stomp.V11, stomp.V12} {
		t.Run(string(v), func(t *testing.T) {
			e := newEnv(t, Config{})
			c := e.dial(stomp.ConnOpt.AcceptVersion(v))
			sendN(t, c, "/queue/q", 3)
			sub, err := c.Subscribe("/queue/q", stomp.AckClient)
			if err != nil {
				t.Fatal(err)
			}
			var last *stomp.Message
			for range 3 {
				last = recv(t, sub)
			}
			q := e.queue("q")
			if s := q.Stats(); s.Unacked != 3 {
				t.Fatalf("unacked %d", s.Unacked)
			}
			// Acking the third settles all three.
			if err := c.Ack(last); err != nil {
				t.Fatal(err)
			}
			if err := c.Send("/queue/other", "", nil, stomp.SendOpt.Receipt); err != nil {
				t.Fatal(err) // the receipt orders the ACK before the check
			}
			if s := q.Stats(); s.Unacked != 0 || s.Acks != 3 {
				t.Fatalf("after cumulative ack: %+v", s)
			}
		})
	}
}

func TestAckClientIndividual(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	sendN(t, c, "/queue/q", 3)
	sub, err := c.Subscribe("/queue/q", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	var ms []*stomp.Message
	for range 3 {
		ms = append(ms, recv(t, sub))
	}
	if ms[1].Header.Get("ack") == "" {
		t.Fatal("1.2 MESSAGE without ack header")
	}
	if err := c.Ack(ms[1]); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if s := e.queue("q").Stats(); s.Unacked != 2 || s.Acks != 1 {
		t.Fatalf("after individual ack: %+v", s)
	}
	// Disconnecting requeues the two unacked, in order.
	c.Disconnect()
	waitFor(t, "requeue", func() bool { return e.queue("q").Stats().Ready == 2 })
	c2 := e.dial()
	sub2, err := c2.Subscribe("/queue/q", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0", "2"} {
		m := recv(t, sub2)
		if string(m.Body) != want || m.Header.Get("redelivered") != "true" {
			t.Errorf("got %q redelivered=%s, want %q", m.Body, m.Header.Get("redelivered"), want)
		}
	}
}

func TestNack(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	sendN(t, c, "/queue/q", 2)
	sub, err := c.Subscribe("/queue/q", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	m0 := recv(t, sub)
	m1 := recv(t, sub)
	// NACK requeues by default: the message comes back, redelivered.
	if err := c.Nack(m0); err != nil {
		t.Fatal(err)
	}
	again := recv(t, sub)
	if string(again.Body) != "0" || again.Header.Get("redelivered") != "true" {
		t.Fatalf("got %q redelivered=%s", again.Body, again.Header.Get("redelivered"))
	}
	if err := c.Ack(again); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(m1); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if s := e.queue("q").Stats(); s.Ready != 0 || s.Unacked != 0 || s.Acks != 2 {
		t.Fatalf("after nack + acks: %+v", s)
	}

	// requeue:false discards (go-stomp cannot set it, so a raw client).
	unsubscribe(t, sub, c)
	sendN(t, c, "/queue/q", 1)
	r := e.raw()
	r.connect("")
	r.write("SUBSCRIBE\nid:s1\ndestination:/queue/q\nack:client\n\n\x00")
	msg := r.read(false)
	if msg.Command != "MESSAGE" {
		t.Fatalf("got %v", msg)
	}
	r.write("NACK\nid:" + msg.Value("ack") + "\nrequeue:false\nreceipt:n1\n\n\x00")
	if f := r.read(false); f.Command != "RECEIPT" || f.Value("receipt-id") != "n1" {
		t.Fatalf("got %v", f)
	}
	if s := e.queue("q").Stats(); s.Ready != 0 || s.Unacked != 0 {
		t.Fatalf("after nack requeue:false: %+v", s)
	}
}

func TestPrefetchCount(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	sendN(t, c, "/queue/q", 6)
	sub, err := c.Subscribe("/queue/q", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "2"))
	if err != nil {
		t.Fatal(err)
	}
	q := e.queue("q")
	for i := 0; i < 6; i += 2 {
		m0, m1 := recv(t, sub), recv(t, sub)
		if string(m0.Body) != fmt.Sprint(i) || string(m1.Body) != fmt.Sprint(i+1) {
			t.Fatalf("got %q %q at %d", m0.Body, m1.Body, i)
		}
		// Both credits are in use: the core holds the rest back.
		if s := q.Stats(); s.Unacked != 2 || s.Ready != 6-i-2 {
			t.Fatalf("at %d: %+v", i, s)
		}
		select {
		case m := <-sub.C:
			t.Fatalf("a third message arrived with prefetch-count 2: %v", m)
		default:
		}
		if err := c.Ack(m0); err != nil {
			t.Fatal(err)
		}
		if err := c.Ack(m1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTransactions(t *testing.T) {
	e := newEnv(t, Config{})
	c := e.dial()
	tx := c.Begin()
	if err := tx.Send("/queue/tq", "", []byte("a"), nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Send("/queue/tq", "", []byte("b"), nil); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if _, err := e.b.VHost("/").Queue("tq"); err == nil {
		t.Fatal("a SEND in an open transaction was applied")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if s := e.queue("tq").Stats(); s.Ready != 2 {
		t.Fatalf("after commit: %+v", s)
	}
	tx = c.Begin()
	if err := tx.Send("/queue/tq", "", []byte("c"), nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if s := e.queue("tq").Stats(); s.Ready != 2 {
		t.Fatalf("after abort: %+v", s)
	}
	// ACKs in a transaction apply at COMMIT, and not at all on ABORT.
	sub, err := c.Subscribe("/queue/tq", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	ma, mb := recv(t, sub), recv(t, sub)
	tx = c.Begin()
	if err := tx.Ack(ma); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if s := e.queue("tq").Stats(); s.Acks != 0 {
		t.Fatalf("ACK applied before commit: %+v", s)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	tx = c.Begin()
	if err := tx.Ack(mb); err != nil {
		t.Fatal(err)
	}
	if err := tx.Abort(); err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/queue/barrier", 1)
	if s := e.queue("tq").Stats(); s.Acks != 1 || s.Unacked != 1 {
		t.Fatalf("after ack commit + ack abort: %+v", s)
	}
}

func TestDurableTopicSubscription(t *testing.T) {
	e := newEnv(t, Config{})
	opts := []func(*stompframe.Frame) error{
		stomp.SubscribeOpt.Id("my-sub"), stomp.SubscribeOpt.Header("durable", "true"), stomp.SubscribeOpt.Header("auto-delete", "false"),
	}
	c := e.dial()
	sub, err := c.Subscribe("/topic/news", stomp.AckClientIndividual, opts...)
	if err != nil {
		t.Fatal(err)
	}
	sendN(t, c, "/topic/news", 1)
	m := recv(t, sub)
	if err := c.Ack(m); err != nil {
		t.Fatal(err)
	}
	c.Disconnect()
	// Published while the subscriber is away: kept in its durable queue.
	p := e.dial()
	sendN(t, p, "/topic/news", 2)
	c2 := e.dial()
	sub2, err := c2.Subscribe("/topic/news", stomp.AckClientIndividual, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0", "1"} {
		m := recv(t, sub2)
		if string(m.Body) != want {
			t.Errorf("got %q want %q", m.Body, want)
		}
		if err := c2.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	// UNSUBSCRIBE with durable:true ends the subscription and its queue.
	unsubscribe(t, sub2, c2, stomp.SubscribeOpt.Header("durable", "true"))
	for _, q := range e.b.VHost("/").Queues() {
		if strings.HasPrefix(q.Name(), "stomp-subscription-") {
			t.Errorf("durable queue %s not deleted", q.Name())
		}
	}
}
