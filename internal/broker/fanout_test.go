package broker

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// slowSink takes a while to deliver, as a sink that writes to a socket
// does: a fanout to many of them is shared with a helper goroutine.
type slowSink struct{ *fakeSink }

func (s slowSink) Deliver(d Delivery) bool {
	for start := time.Now(); time.Since(start) < 2*time.Microsecond; {
	}
	return s.fakeSink.Deliver(d)
}

// fanoutQueues declares n queues bound to amq.fanout, each with a recording
// consumer (slow ones if slow is set).
func fanoutQueues(t testing.TB, v *VHost, n int, slow bool) []*fakeSink {
	t.Helper()
	sinks := make([]*fakeSink, n)
	for i := range sinks {
		name := fmt.Sprint("fan", i)
		q, err := v.DeclareQueue(name, QueueOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.BindQueue(name, "amq.fanout", "", nil, 0); err != nil {
			t.Fatal(err)
		}
		sinks[i] = &fakeSink{}
		var sink Sink = sinks[i]
		if slow {
			sink = slowSink{sinks[i]}
		}
		if _, err := q.Consume(ConsumerOptions{Tag: "c", NoAck: true, Sink: sink}); err != nil {
			t.Fatal(err)
		}
	}
	return sinks
}

// A message for many slow queues is enqueued by two goroutines; every
// queue must still get every message once, each publisher's in publish
// order.
func TestParallelFanoutKeepsOrder(t *testing.T) {
	b := New(Options{})
	b.parallel = true // as on a machine with more than one core
	v := b.VHost(DefaultVHost)
	const queues, publishers, each = 3 * parallelFanout, 4, 300
	sinks := fanoutQueues(t, v, queues, true)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pub := v.Publisher()
			for i := range each {
				n, err := pub.Publish(&Message{Exchange: "amq.fanout", Body: []byte(fmt.Sprintf("%d-%d", p, i))})
				if err != nil || n != queues {
					t.Errorf("publish routed to %d queues (%v), want %d", n, err, queues)
					return
				}
			}
		}()
	}
	wg.Wait()
	for qi, s := range sinks {
		got := bodies(s.deliveries())
		if len(got) != publishers*each {
			t.Fatalf("queue %d got %d messages, want %d", qi, len(got), publishers*each)
		}
		next := make([]int, publishers)
		for _, b := range got {
			var p, i int
			if _, err := fmt.Sscanf(b, "%d-%d", &p, &i); err != nil {
				t.Fatalf("queue %d: body %q: %v", qi, b, err)
			}
			if i != next[p] {
				t.Fatalf("queue %d: publisher %d's message %d arrived when %d was due", qi, p, i, next[p])
			}
			next[p]++
		}
	}
}

// A refusal by one queue of a large fanout reaches the publisher, and the
// others still take the message.
func TestParallelFanoutReportsRejection(t *testing.T) {
	b := New(Options{})
	b.parallel = true
	v := b.VHost(DefaultVHost)
	fanoutQueues(t, v, 2*parallelFanout, true)
	if _, err := v.DeclareQueue("small", QueueOptions{Args: Table{"x-max-length": int64(1), "x-overflow": "reject-publish"}}); err != nil {
		t.Fatal(err)
	}
	if err := v.BindQueue("small", "amq.fanout", "", nil, 0); err != nil {
		t.Fatal(err)
	}
	p := v.Publisher()
	if n := publish(t, p, "amq.fanout", "", "one"); n != 2*parallelFanout+1 || p.Rejected() {
		t.Fatalf("first publish: %d queues, rejected %v; want %d, false", n, p.Rejected(), 2*parallelFanout+1)
	}
	if n := publish(t, p, "amq.fanout", "", "two"); n != 2*parallelFanout || !p.Rejected() {
		t.Fatalf("second publish: %d queues, rejected %v; want %d, true", n, p.Rejected(), 2*parallelFanout)
	}
}

// BenchmarkFanout100 publishes to 100 queues with a consumer each that
// only records (a fanout too cheap to share with a helper).
func BenchmarkFanout100(b *testing.B) {
	v := New(Options{}).VHost(DefaultVHost)
	sinks := fanoutQueues(b, v, 100, false)
	p := v.Publisher()
	m := &Message{Exchange: "amq.fanout", Body: make([]byte, 128)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Publish(m); err != nil {
			b.Fatal(err)
		}
		if i%1024 == 0 {
			for _, s := range sinks {
				s.mu.Lock()
				s.got = s.got[:0]
				s.mu.Unlock()
			}
		}
	}
}
