package admin

import (
	"context"
	"sync"
	"time"

	"github.com/heraldmq/herald/internal/broker"
)

// Message rates for the management API's message_stats (publish_details,
// deliver_get_details, ack_details: {"rate": messages per second}), as
// RabbitMQ's management plugin serves them. The queues only count (one
// atomic add per message, see broker.QueueStats); a sampler owned by the
// Server reads every queue's counters each Config.StatsInterval (5 s by
// default, RabbitMQ's collect_statistics_interval) and keeps the rates
// over the last interval. A queue first seen by a sample counts from zero
// (its counters start at zero when it is declared); the first sample
// after start is the baseline, with every rate 0.

// msgRates are messages a second over the last sampling interval.
type msgRates struct {
	Publish, DeliverGet, Ack float64
}

func (r *msgRates) add(o msgRates) {
	r.Publish += o.Publish
	r.DeliverGet += o.DeliverGet
	r.Ack += o.Ack
}

// msgCounts are a queue's counters at one sample.
type msgCounts struct {
	publish, deliverGet, ack uint64
}

// statsSampler holds the last sample and the rates it gave.
type statsSampler struct {
	b *broker.Broker

	mu     sync.Mutex // guards the fields below
	at     time.Time  // when the last sample was taken; zero before the first
	counts map[*broker.Queue]msgCounts
	rates  map[*broker.Queue]msgRates
	total  msgRates
}

func newStatsSampler(b *broker.Broker) *statsSampler {
	return &statsSampler{b: b}
}

// run samples every interval until ctx ends; the first sample is taken at
// once (the baseline).
func (st *statsSampler) run(ctx context.Context, interval time.Duration) {
	st.sample(time.Now())
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st.sample(now)
		}
	}
}

// sample reads every queue's counters and computes the rates since the
// previous sample. Queues deleted since then drop out.
func (st *statsSampler) sample(now time.Time) {
	counts := make(map[*broker.Queue]msgCounts)
	for _, v := range st.b.VHosts() {
		for _, q := range v.Queues() {
			s := q.Stats()
			counts[q] = msgCounts{publish: s.Published, deliverGet: s.Delivered, ack: s.Acks}
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	rates := make(map[*broker.Queue]msgRates, len(counts))
	var total msgRates
	if !st.at.IsZero() {
		secs := now.Sub(st.at).Seconds()
		if secs <= 0 {
			return // a clock step back: keep the rates we have
		}
		per := func(cur, prev uint64) float64 {
			if cur <= prev {
				return 0
			}
			return float64(cur-prev) / secs
		}
		for q, c := range counts {
			p := st.counts[q] // zero for a queue declared since
			r := msgRates{Publish: per(c.publish, p.publish), DeliverGet: per(c.deliverGet, p.deliverGet), Ack: per(c.ack, p.ack)}
			rates[q] = r
			total.add(r)
		}
	}
	st.at, st.counts, st.rates, st.total = now, counts, rates, total
}

// queue returns the rates of q over the last interval (0 if unsampled).
func (st *statsSampler) queue(q *broker.Queue) msgRates {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.rates[q]
}

// overall returns the sum of every queue's rates.
func (st *statsSampler) overall() msgRates {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.total
}
