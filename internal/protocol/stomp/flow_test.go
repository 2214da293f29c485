package stomp

import (
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// TestFlowControl: a publisher that outruns a queue's consumer is paused
// (its frames stay unread: TCP push-back) until the consumer catches up,
// while other clients carry on.
func TestFlowControl(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes ~8k messages")
	}
	e := newEnv(t, Config{})
	consumer := e.raw()
	consumer.connect("")
	consumer.write("SUBSCRIBE\nid:c\ndestination:/queue/flow\nack:client-individual\nprefetch-count:1\nreceipt:s\n\n\x00")
	if f := consumer.read(false); f.Command != "RECEIPT" {
		t.Fatalf("got %v", f)
	}

	const n = 8400 // past the core's high watermark (8192 ready)
	pub := e.raw()
	pub.connect("")
	var b strings.Builder
	for range n {
		b.WriteString("SEND\ndestination:/queue/flow\n\nm\x00")
	}
	b.WriteString("SEND\ndestination:/queue/flow\nreceipt:done\n\nlast\x00")
	wrote := make(chan error, 1)
	go func() {
		_, err := pub.nc.Write([]byte(b.String()))
		wrote <- err
	}()
	q := e.queue("flow")
	waitFor(t, "the queue to pass its high watermark", func() bool { return q.Stats().Ready > 8192 })
	// Paused: publishes trickle (one per second at most) instead of
	// running to the end.
	at := q.Stats().Published
	time.Sleep(300 * time.Millisecond)
	if now := q.Stats().Published; now > at+1 || now >= n {
		t.Fatalf("publisher not paused: %d -> %d", at, now)
	}
	// Another client is not held back.
	other := e.dial()
	start := time.Now()
	if err := other.Send("/queue/elsewhere", "", []byte("x"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("an unrelated publisher waited %v", d)
	}
	// The consumer catches up; the publisher resumes and finishes.
	_ = consumer.nc.SetDeadline(time.Now().Add(30 * time.Second))
	_ = pub.nc.SetDeadline(time.Now().Add(30 * time.Second))
	got := make(chan struct{})
	go func() {
		defer close(got)
		if f := pub.read(false); f.Command != "RECEIPT" || f.Value("receipt-id") != "done" {
			t.Errorf("publisher got %v", f)
		}
	}()
	acked := 0
	for done := false; !done; {
		m := consumer.read(false)
		consumer.write("ACK\nid:" + m.Value("ack") + "\n\n\x00")
		acked++
		select {
		case <-got:
			done = true
		default:
		}
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if s := q.Stats(); s.Published != n+1 {
		t.Fatalf("published %d of %d", s.Published, n+1)
	}
	t.Logf("publisher finished after %d acks", acked)
}
