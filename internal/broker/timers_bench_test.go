package broker

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExpireMillion parks 1,000,000 messages with random per-message
// TTLs (1-5 s) in a queue nobody consumes and measures the CPU the broker
// spends expiring them, as a share of one core over the expiry window.
//
//	go test -run '^$' -bench ExpireMillion -benchtime 1x ./internal/broker/
func BenchmarkExpireMillion(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		br := New(Options{})
		v := br.VHost(DefaultVHost)
		q, _ := v.DeclareQueue("ttl", QueueOptions{})
		p := v.Publisher()
		body := make([]byte, 16)
		for j := 0; j < n; j++ {
			m := &Message{RoutingKey: "ttl", Body: body, Properties: Properties{Expiration: strconv.Itoa(1000 + rand.IntN(4000))}}
			if _, err := p.Publish(m); err != nil {
				b.Fatal(err)
			}
		}
		startCPU, start := cpuTime(), time.Now()
		for q.Stats().Ready > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		wall := time.Since(start)
		cpu := cpuTime() - startCPU
		b.ReportMetric(float64(cpu)/float64(wall)*100, "%core")
		b.ReportMetric(wall.Seconds(), "s-to-empty")
		br.Close()
	}
}

type timingSink struct {
	mu   sync.Mutex
	late []time.Duration
	due  map[*Message]time.Time
}

func (s *timingSink) Deliver(d Delivery) bool {
	now := time.Now()
	s.mu.Lock()
	s.late = append(s.late, now.Sub(s.due[d.Message]))
	s.mu.Unlock()
	return true
}

func (s *timingSink) Cancelled(*Consumer) {}

// BenchmarkDelayedHundredThousand schedules 100,000 delayed messages due
// over 10 s and reports how late they arrive (none may be early).
//
//	go test -run '^$' -bench DelayedHundredThousand -benchtime 1x ./internal/broker/
func BenchmarkDelayedHundredThousand(b *testing.B) {
	const n = 100_000
	for i := 0; i < b.N; i++ {
		br := New(Options{})
		v := br.VHost(DefaultVHost)
		if _, err := v.DeclareExchange("later", ExchangeOptions{Kind: KindDelayed, Args: Table{"x-delayed-type": KindDirect}}); err != nil {
			b.Fatal(err)
		}
		q, _ := v.DeclareQueue("q", QueueOptions{})
		if err := v.BindQueue("q", "later", "k", nil, 0); err != nil {
			b.Fatal(err)
		}
		sink := &timingSink{due: make(map[*Message]time.Time, n)}
		if _, err := q.Consume(ConsumerOptions{Tag: "c", NoAck: true, Sink: sink}); err != nil {
			b.Fatal(err)
		}
		p := v.Publisher()
		msgs := make([]*Message, n)
		for j := range msgs {
			delay := 1 + rand.IntN(10_000)
			msgs[j] = &Message{Exchange: "later", RoutingKey: "k", Properties: Properties{Headers: Table{"x-delay": int64(delay)}}}
		}
		startCPU, start := cpuTime(), time.Now()
		for _, m := range msgs {
			delay, _ := asInt(m.Properties.Headers["x-delay"])
			sink.mu.Lock()
			sink.due[m] = time.Now().Add(time.Duration(delay) * time.Millisecond)
			sink.mu.Unlock()
			if _, err := p.Publish(m); err != nil {
				b.Fatal(err)
			}
		}
		for {
			sink.mu.Lock()
			got := len(sink.late)
			sink.mu.Unlock()
			if got == n {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("only %d of %d delayed messages arrived", got, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cpu, wall := cpuTime()-startCPU, time.Since(start)
		slices.Sort(sink.late)
		if sink.late[0] < 0 {
			b.Errorf("a message arrived %v early", -sink.late[0])
		}
		b.ReportMetric(float64(sink.late[n/2].Microseconds())/1000, "p50-late-ms")
		b.ReportMetric(float64(sink.late[n*99/100].Microseconds())/1000, "p99-late-ms")
		b.ReportMetric(float64(sink.late[n-1].Microseconds())/1000, "max-late-ms")
		b.ReportMetric(float64(cpu)/float64(wall)*100, "%core")
		br.Close()
	}
}
