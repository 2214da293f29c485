package test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BenchmarkDeepQueue is the durability issue's deep-queue check, on the real
// binary: N persistent 1 KiB messages (HERALD_DEEP_MESSAGES, default
// 2,000,000) are published with confirms into one durable queue and left
// there; it reports the broker's RSS while they sit, how long a restart
// after kill -9 takes until the first message can be fetched, and the data
// directory after the queue is drained, as a share of its peak.
//
//	go test -run '^$' -bench DeepQueue -benchtime 1x ./test/
func BenchmarkDeepQueue(b *testing.B) {
	n := 2_000_000
	if s := os.Getenv("HERALD_DEEP_MESSAGES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			b.Fatalf("HERALD_DEEP_MESSAGES=%q: want a positive number", s)
		}
		n = v
	}
	bin := buildHerald(b)
	dir := b.TempDir()
	logs := &procLog{}
	b.ResetTimer()

	proc := startHerald(b, bin, dir, 1, logs)
	url := "amqp://guest:guest@" + proc.addr + "/"
	pid := proc.cmd.Process.Pid
	start := time.Now()
	peak := fillDeepQueue(b, url, n, func() int { return rssMiB(pid) })
	fill := time.Since(start)
	parked := 0
	for i := 0; i < 10; i++ { // while they sit there
		time.Sleep(500 * time.Millisecond)
		parked = max(parked, rssMiB(pid))
	}
	peakDir := dirSize(b, dir)
	b.Logf("filled %d messages in %v (%.0f msg/s); RSS while filling up to %d MiB, parked %d MiB; data dir %d MiB",
		n, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), peak, parked, peakDir>>20)

	proc.kill()
	restart := time.Now()
	proc = startHerald(b, bin, dir, 2, logs)
	url = "amqp://guest:guest@" + proc.addr + "/"
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, ok, err := ch.Get("deep", false); err != nil || !ok {
		b.Fatalf("first message after restart: ok=%v err=%v", ok, err)
	}
	ready := time.Since(restart)
	_ = ch.Close() // the fetched message goes back to the queue
	restartRSS := rssMiB(proc.cmd.Process.Pid)
	b.Logf("restart after kill -9: first message fetched after %v; RSS %d MiB", ready.Round(time.Millisecond), restartRSS)

	drained, drainPeak := drainDeepQueue(b, conn, n, func() int { return rssMiB(proc.cmd.Process.Pid) })
	_ = conn.Close()
	after := dirSize(b, dir)
	for deadline := time.Now().Add(30 * time.Second); after*10 > peakDir && time.Now().Before(deadline); after = dirSize(b, dir) {
		time.Sleep(200 * time.Millisecond) // segment deletion runs in the background
	}
	share := 100 * float64(after) / float64(peakDir)
	b.Logf("drained %d (RSS up to %d MiB); data dir %d MiB = %.1f%% of its peak", drained, drainPeak, after>>20, share)
	proc.kill()

	b.ReportMetric(float64(parked), "parked-RSS-MiB")
	b.ReportMetric(ready.Seconds(), "restart-s")
	b.ReportMetric(share, "datadir-%-of-peak")
	b.ReportMetric(float64(n)/fill.Seconds(), "fill-msg/s")
}

// fillDeepQueue publishes n persistent 1 KiB messages with confirms, at
// most 10,000 unconfirmed, and returns the highest RSS sampled meanwhile.
func fillDeepQueue(b *testing.B, url string, n int, rss func() int) int {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueueDeclare("deep", true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		b.Fatal(err)
	}
	const window = 10_000
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window))
	body := make([]byte, 1024)
	peak, outstanding := 0, 0
	await := func() {
		c, ok := <-confirms
		if !ok || !c.Ack {
			b.Fatalf("message %d not confirmed (channel open: %v)", c.DeliveryTag, ok)
		}
		outstanding--
	}
	for i := 0; i < n; i++ {
		for outstanding >= window {
			await()
		}
		if err := ch.PublishWithContext(context.Background(), "", "deep", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			b.Fatal(err)
		}
		outstanding++
		if i%50_000 == 0 {
			peak = max(peak, rss())
		}
	}
	for outstanding > 0 {
		await()
	}
	return max(peak, rss())
}

// drainDeepQueue consumes n messages with manual acks and returns how many
// arrived and the highest RSS sampled meanwhile.
func drainDeepQueue(b *testing.B, conn *amqp.Connection, n int, rss func() int) (int, int) {
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Qos(2000, 0, false); err != nil {
		b.Fatal(err)
	}
	ds, err := ch.Consume("deep", "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	got, peak := 0, 0
	idle := time.NewTimer(30 * time.Second)
	defer idle.Stop()
	for got < n {
		select {
		case d := <-ds:
			got++
			if got%500 == 0 || got == n {
				if err := d.Ack(true); err != nil {
					b.Fatal(err)
				}
			}
			if got%200_000 == 0 {
				peak = max(peak, rss())
			}
		case <-idle.C:
			b.Fatalf("drain stalled after %d of %d messages", got, n)
		}
		if got%10_000 == 0 {
			idle.Reset(30 * time.Second)
		}
	}
	return got, peak
}

// rssMiB reads a process's resident set size from /proc.
func rssMiB(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, _ := strconv.Atoi(f[1])
			return kib >> 10
		}
	}
	return 0
}
