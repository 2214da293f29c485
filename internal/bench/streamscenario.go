package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The stream scenario, over AMQP 0-9-1 against any broker with streams
// (Herald, RabbitMQ 3.9+): two phases on one fresh stream.
//
//  1. publish: --producers publish --size byte messages with publisher
//     confirms (window --confirm-window) for --duration; the figure is
//     confirmed publishes per second.
//  2. replay: --consumers consumers read the whole stream from
//     x-stream-offset "first" at once (basic.qos --prefetch, manual acks
//     every --ack-every); the figure is deliveries per second over all
//     consumers, from the first consume to the last consumer's last
//     message.
//
// The stream is deleted at the end.

// ScenarioStream names the stream scenario.
const ScenarioStream = "stream"

const streamSummary = "publish with confirms into a stream for --duration, then --consumers replay it from first at once; confirmed msgs/s and replay msgs/s"

// StreamResult are the figures of the stream scenario.
type StreamResult struct {
	Published     uint64        `json:"published"` // confirmed
	PublishTime   time.Duration `json:"publish_ns"`
	PublishPerSec float64       `json:"publish_per_sec"`
	Consumers     int           `json:"consumers"`
	Replayed      uint64        `json:"replayed"` // deliveries over all consumers
	ReplayTime    time.Duration `json:"replay_ns"`
	ReplayPerSec  float64       `json:"replay_per_sec"` // over all consumers
}

func runStreamScenario(r *run) (Result, error) {
	cfg := r.cfg
	res := Result{Scenario: cfg.Scenario, Description: describeStream(cfg), Config: cfg, RunID: r.id, Start: time.Now()}
	admin, err := dial(cfg.URL, "stream-admin")
	if err != nil {
		return res, err
	}
	defer admin.close()
	name := namePrefix + "stream-" + r.id
	if _, err := admin.ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		return res, fmt.Errorf("declare the stream: %w", err)
	}
	defer func() {
		if cn, err := dial(cfg.URL, "stream-cleanup"); err == nil {
			_, _ = cn.ch.QueueDelete(name, false, false, false)
			cn.close()
		}
	}()
	sr := &StreamResult{Consumers: cfg.Consumers}
	if err := streamPublish(r, name, sr); err != nil {
		return res, err
	}
	if err := streamReplay(r, name, sr); err != nil {
		return res, err
	}
	res.Stream = sr
	res.Sent, res.Confirmed, res.SentPerSec = sr.Published, sr.Published, sr.PublishPerSec
	res.Expected, res.Received, res.MsgsPerSec = sr.Published*uint64(cfg.Consumers), sr.Replayed, sr.ReplayPerSec
	res.Lost = res.Expected - min(res.Expected, res.Received)
	res.Elapsed = sr.PublishTime + sr.ReplayTime
	return res, nil
}

func describeStream(c Config) string {
	return fmt.Sprintf("%s -> 1 stream (confirms, window %d) for %v, then %s from first, prefetch %d, %d B",
		plural(c.Producers, "producer"), c.ConfirmWindow, c.Duration, plural(c.Consumers, "consumer"), c.Prefetch, c.Size)
}

// streamPublish runs the publish phase.
func streamPublish(r *run, name string, sr *StreamResult) error {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(r.ctx, cfg.Duration)
	defer cancel()
	var confirmed atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Producers)
	body := make([]byte, cfg.Size)
	start := time.Now()
	for i := range cfg.Producers {
		cn, err := dial(cfg.URL, fmt.Sprintf("stream-producer-%d", i))
		if err != nil {
			return err
		}
		defer cn.close()
		if err := cn.ch.Confirm(false); err != nil {
			return err
		}
		acks := cn.ch.NotifyPublish(make(chan amqp.Confirmation, cfg.ConfirmWindow))
		wg.Add(1)
		go func() {
			defer wg.Done()
			inflight := 0
			for ctx.Err() == nil {
				for inflight < cfg.ConfirmWindow && ctx.Err() == nil {
					if err := cn.ch.PublishWithContext(r.ctx, "", name, false, false, amqp.Publishing{Body: body}); err != nil {
						errs <- err
						return
					}
					inflight++
				}
				c, ok := <-acks
				if !ok {
					return
				}
				inflight--
				if c.Ack {
					confirmed.Add(1)
				}
			}
			for ; inflight > 0; inflight-- {
				c, ok := <-acks
				if !ok {
					return
				}
				if c.Ack {
					confirmed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	sr.PublishTime = time.Since(start)
	sr.Published = confirmed.Load()
	sr.PublishPerSec = float64(sr.Published) / sr.PublishTime.Seconds()
	fmt.Fprintf(r.out, "published %s confirmed in %v (%s msg/s)\n", FormatCount(sr.Published), sr.PublishTime.Round(time.Millisecond), formatRate(sr.PublishPerSec))
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// streamReplay runs the replay phase: every consumer reads the stream
// from first up to the last message published.
func streamReplay(r *run, name string, sr *StreamResult) error {
	cfg := r.cfg
	want := sr.Published
	if want == 0 {
		return fmt.Errorf("nothing was published")
	}
	q, err := func() (amqp.Queue, error) {
		cn, err := dial(cfg.URL, "stream-inspect")
		if err != nil {
			return amqp.Queue{}, err
		}
		defer cn.close()
		return cn.ch.QueueDeclarePassive(name, true, false, false, false, amqp.Table{"x-queue-type": "stream"})
	}()
	if err != nil {
		return err
	}
	total := uint64(q.Messages) // the stream's length: unconfirmed publishes may be in it too
	if total < want {
		total = want
	}
	var replayed atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Consumers)
	var conns []*conn
	defer func() {
		for _, cn := range conns {
			cn.close()
		}
	}()
	start := time.Now()
	for i := range cfg.Consumers {
		cn, err := dial(cfg.URL, fmt.Sprintf("stream-consumer-%d", i))
		if err != nil {
			return err
		}
		conns = append(conns, cn)
		if err := cn.ch.Qos(cfg.Prefetch, 0, false); err != nil {
			return err
		}
		ds, err := cn.ch.Consume(name, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n uint64
			for n < total {
				select {
				case d, ok := <-ds:
					if !ok {
						errs <- fmt.Errorf("consumer %d: deliveries ended after %d of %d", i, n, total)
						return
					}
					n++
					if n%uint64(cfg.AckEvery) == 0 || n == total {
						if err := d.Ack(cfg.AckEvery > 1); err != nil {
							errs <- err
							return
						}
					}
				case <-r.ctx.Done():
					return
				}
			}
			replayed.Add(n)
		}()
	}
	wg.Wait()
	sr.ReplayTime = time.Since(start)
	sr.Replayed = replayed.Load()
	sr.ReplayPerSec = float64(sr.Replayed) / sr.ReplayTime.Seconds()
	fmt.Fprintf(r.out, "replayed %s deliveries to %s in %v (%s msg/s)\n", FormatCount(sr.Replayed), plural(cfg.Consumers, "consumer"), sr.ReplayTime.Round(time.Millisecond), formatRate(sr.ReplayPerSec))
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func writeStreamRows(row func(label, format string, args ...any), res Result) {
	s := res.Stream
	row("publish", "%s confirmed in %v: %s msg/s", FormatCount(s.Published), s.PublishTime.Round(time.Millisecond), formatRate(s.PublishPerSec))
	row("replay", "%s deliveries to %s in %v: %s msg/s", FormatCount(s.Replayed), plural(s.Consumers, "consumer"), s.ReplayTime.Round(time.Millisecond), formatRate(s.ReplayPerSec))
}
