package web_test

import (
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web"
)

// TestWSTouchRenewsLease: under a 300ms consumer timeout, a delivery that
// is touched every 100ms stays with the socket for well past the timeout;
// once touches stop, it goes back to the queue and is delivered again.
func TestWSTouchRenewsLease(t *testing.T) {
	f := newFixture(t, web.Config{})
	q, err := f.b.VHost("/").DeclareQueue("jobs", broker.QueueOptions{Args: broker.Table{"x-consumer-timeout": int64(300)}})
	if err != nil {
		t.Fatal(err)
	}
	c := f.dialWS("")
	c.subscribe(map[string]any{"id": "s", "queue": "jobs", "ack": "client"})
	f.publish("", "jobs", "long job")
	m := c.expect("message")
	for range 8 { // 800ms of work, lease renewed every 100ms
		time.Sleep(100 * time.Millisecond) // the client "working"; no condition to await
		c.send(map[string]any{"op": "touch", "tag": m["tag"]})
		c.expect("touched")
		if st := q.Stats(); st.Unacked != 1 || st.Ready != 0 {
			t.Fatalf("delivery left the socket despite touches: %+v", st)
		}
	}
	// Untouched, the delivery times out, goes back to the queue and comes
	// round again, flagged redelivered.
	again := c.expect("message")
	if again["body"] != "long job" || again["redelivered"] != true {
		t.Fatalf("after the lease ran out: %v", again)
	}
}
