package broker

import (
	"fmt"
	"testing"
)

// BenchmarkPublishDeliverAck is the core's hot path: publish to a queue
// with one consumer (prefetch 1000), deliver, ack.
func BenchmarkPublishDeliverAck(b *testing.B) {
	v := New(Options{}).VHost(DefaultVHost)
	q, _ := v.DeclareQueue("q", QueueOptions{})
	s := &fakeSink{}
	if _, err := q.Consume(ConsumerOptions{Tag: "c", Prefetch: 1000, Sink: s}); err != nil {
		b.Fatal(err)
	}
	p := v.Publisher()
	m := &Message{RoutingKey: "q", Body: make([]byte, 128)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.Publish(m); err != nil {
			b.Fatal(err)
		}
		d := s.got[len(s.got)-1]
		q.Ack(d.ID)
		if len(s.got) > 4096 {
			s.got = s.got[:0]
		}
	}
}

// BenchmarkTopicFanout routes through amq.topic to 10 of 1,000 bound queues.
func BenchmarkTopicFanout(b *testing.B) {
	v := New(Options{}).VHost(DefaultVHost)
	for i := 0; i < 1000; i++ {
		name := fmt.Sprint("q", i)
		if _, err := v.DeclareQueue(name, QueueOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := v.BindQueue(name, "amq.topic", fmt.Sprintf("stock.%d.*", i%100), nil, 0); err != nil {
			b.Fatal(err)
		}
	}
	p := v.Publisher()
	m := &Message{Exchange: "amq.topic", RoutingKey: "stock.7.nyse", Body: make([]byte, 128)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		qs, err := p.Route(m)
		if err != nil || len(qs) != 10 {
			b.Fatalf("routed %d, %v", len(qs), err)
		}
	}
}

// BenchmarkBindUnbind15000 is 15,000 subscribers of a broadcast joining
// (a queue each, bound to amq.topic and amq.fanout with the same key) and
// then leaving, in the order they joined: a reconnect storm's work under
// the vhost's write lock, which routing waits for.
func BenchmarkBindUnbind15000(b *testing.B) {
	const n = 15000
	for range b.N {
		v := New(Options{}).VHost(DefaultVHost)
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprint("sub-", i)
			if _, err := v.DeclareQueue(names[i], QueueOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		for _, name := range names {
			if err := v.BindQueue(name, "amq.topic", "ticks", nil, 0); err != nil {
				b.Fatal(err)
			}
			if err := v.BindQueue(name, "amq.fanout", "", nil, 0); err != nil {
				b.Fatal(err)
			}
		}
		for _, name := range names {
			if err := v.UnbindQueue(name, "amq.topic", "ticks", nil, 0); err != nil {
				b.Fatal(err)
			}
			if _, err := v.DeleteQueue(name, 0, false, false); err != nil {
				b.Fatal(err)
			}
		}
	}
}
