package test

import (
	"context"
	"encoding/binary"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BenchmarkLargeStream is the streams issue's "bounded by disk, not RAM"
// check, on the real binary: it fills one stream with HERALD_STREAM_GIB
// (default 5) GiB of 1 KiB messages published with confirms while a
// consumer tails it, then reads the whole stream from `first` while the
// publisher goes on at 2,000 msg/s and the tailer keeps tailing. It reports
// the broker's highest RSS in each phase, the fill and replay rates, and the
// tailer's publish-to-delivery p99 before and during the replay.
//
//	go test -run '^$' -bench LargeStream -benchtime 1x -timeout 60m ./test/
func BenchmarkLargeStream(b *testing.B) {
	gib := 5.0
	if s := os.Getenv("HERALD_STREAM_GIB"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			b.Fatalf("HERALD_STREAM_GIB=%q: want a positive number", s)
		}
		gib = v
	}
	const size = 1024
	n := int(gib * (1 << 30) / size)
	bin := buildHerald(b)
	dir := b.TempDir()
	b.ResetTimer()

	proc := startHerald(b, bin, dir, 1, &procLog{})
	defer proc.kill()
	url := "amqp://guest:guest@" + proc.addr + "/"
	pid := proc.cmd.Process.Pid
	var peak atomic.Int64
	sample := func() { peak.Store(max(peak.Load(), int64(rssMiB(pid)))) }

	conn := dialURL(b, url)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare("big", true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		b.Fatal(err)
	}

	tail := newStreamReader(b, url, "next")
	defer tail.stop()
	start := time.Now()
	publishStream(b, url, n, 0, nil, sample)
	fill := time.Since(start)
	fillPeak := peak.Swap(0)
	tailFill := tail.latencies()
	b.Logf("filled %d messages (%.1f GiB) in %v: %.0f msg/s; RSS up to %d MiB; tailer got %d, p99 %v",
		n, gib, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), fillPeak, tail.count(), p99(tailFill))

	// Now read it all from the start while the publisher and the tailer go on.
	stopPub := make(chan struct{})
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		publishStream(b, url, -1, 2000, stopPub, sample)
	}()
	replay := newStreamReader(b, url, "first")
	defer replay.stop()
	start = time.Now()
	deadline := time.Now().Add(45 * time.Minute)
	for replay.count() < n {
		if time.Now().After(deadline) {
			b.Fatalf("replay stalled at %d of %d", replay.count(), n)
		}
		time.Sleep(500 * time.Millisecond) // progress, and an RSS sample
		sample()
	}
	took := time.Since(start)
	close(stopPub)
	pubWG.Wait()
	tailReplay := tail.latencies()[len(tailFill):]
	b.Logf("replayed %d from first in %v: %.0f msg/s, while publishing at 2,000 msg/s; RSS up to %d MiB; tailer p99 %v over %d deliveries",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), peak.Load(), p99(tailReplay), len(tailReplay))
	b.ReportMetric(float64(fillPeak), "fill-RSS-MiB")
	b.ReportMetric(float64(peak.Load()), "replay-RSS-MiB")
	b.ReportMetric(float64(n)/took.Seconds(), "replay-msg/s")
	b.ReportMetric(float64(p99(tailReplay).Microseconds())/1000, "tail-p99-ms")
}

// publishStream publishes n 1 KiB messages (n < 0: until stop) into the
// stream "big" with confirms, at most 10,000 unconfirmed, at rate msg/s
// (0: as fast as possible). Each body starts with its send time.
func publishStream(b *testing.B, url string, n, rate int, stop <-chan struct{}, sample func()) {
	conn := dialURL(b, url)
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Error(err)
		return
	}
	if err := ch.Confirm(false); err != nil {
		b.Error(err)
		return
	}
	const window = 10_000
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	outstanding := 0
	await := func() bool {
		c, ok := <-confirms
		if !ok || !c.Ack {
			b.Errorf("message %d not confirmed (channel open: %v)", c.DeliveryTag, ok)
			return false
		}
		outstanding--
		return true
	}
	var tick *time.Ticker
	if rate > 0 {
		tick = time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
	}
	for i := 0; n < 0 || i < n; i++ {
		if tick != nil {
			select {
			case <-tick.C:
			case <-stop:
				n = i
			}
			if n == i {
				break
			}
		}
		for outstanding >= window {
			if !await() {
				return
			}
		}
		body := make([]byte, 1024)
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		if err := ch.PublishWithContext(context.Background(), "", "big", false, false, amqp.Publishing{Body: body}); err != nil {
			b.Error(err)
			return
		}
		outstanding++
		if i%50_000 == 0 {
			sample()
		}
	}
	for outstanding > 0 {
		if !await() {
			return
		}
	}
}

// streamReader consumes the stream "big" from an offset, acking in batches,
// and keeps every delivery's publish-to-delivery latency.
type streamReader struct {
	conn *amqp.Connection
	mu   sync.Mutex
	lat  []time.Duration
	n    atomic.Int64
	done chan struct{}
}

func newStreamReader(b *testing.B, url, offset string) *streamReader {
	r := &streamReader{conn: dialURL(b, url), done: make(chan struct{})}
	ch, err := r.conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Qos(2000, 0, false); err != nil {
		b.Fatal(err)
	}
	ds, err := ch.Consume("big", "", false, false, false, false, amqp.Table{"x-stream-offset": offset})
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		defer close(r.done)
		got := 0
		for d := range ds {
			got++
			sent := int64(binary.BigEndian.Uint64(d.Body))
			r.mu.Lock()
			if offset == "next" {
				r.lat = append(r.lat, time.Duration(time.Now().UnixNano()-sent))
			}
			r.mu.Unlock()
			r.n.Add(1)
			if got%500 == 0 {
				_ = d.Ack(true)
			}
		}
	}()
	return r
}

func (r *streamReader) count() int { return int(r.n.Load()) }

func (r *streamReader) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lat)
}

func (r *streamReader) stop() {
	_ = r.conn.Close()
	<-r.done
}

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)*99/100]
}

func dialURL(b *testing.B, url string) *amqp.Connection {
	c, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
