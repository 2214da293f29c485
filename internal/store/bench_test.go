package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func benchRecs(id uint64, payload []byte) []Record {
	return []Record{
		{Kind: KindMessage, MessageID: id, Meta: payload[:32], Body: payload},
		{Kind: KindEnqueue, QueueID: id % 8, MessageID: id, Seq: id},
	}
}

func reportLog(b *testing.B, l *Log, start time.Time) {
	s := l.Stats()
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(s.Syncs)/secs, "fsyncs/s")
	b.ReportMetric(float64(s.Bytes)/secs/1e6, "written-MB/s")
	if s.Batches > 0 {
		b.ReportMetric(float64(s.Appends)/float64(s.Batches), "appends/fsync")
	}
}

// BenchmarkAppend1KiB: one appender waiting for durability each time, so
// every append costs one write+fsync.
func BenchmarkAppend1KiB(b *testing.B) {
	l, _, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := make([]byte, 1024)
	b.SetBytes(1024)
	b.ReportAllocs()
	start := time.Now()
	var id uint64
	for b.Loop() {
		id++
		if err := <-l.Append(benchRecs(id, payload)...); err != nil {
			b.Fatal(err)
		}
	}
	reportLog(b, l, start)
}

// BenchmarkAppendParallel1KiB: many appenders each waiting for durability:
// group commit makes them share fsyncs.
func BenchmarkAppendParallel1KiB(b *testing.B) {
	l, _, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := make([]byte, 1024)
	var next atomic.Uint64
	b.SetBytes(1024)
	b.SetParallelism(32)
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ch := make(chan error, 1)
		done := func(err error) { ch <- err }
		for pb.Next() {
			l.AppendFunc(benchRecs(next.Add(1), payload), done)
			if err := <-ch; err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportLog(b, l, start)
}

// BenchmarkRecover opens a log of 200k live 256-byte messages.
func BenchmarkRecover(b *testing.B) {
	const n = 200_000
	dir := b.TempDir()
	l, _, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	var wg sync.WaitGroup
	for id := uint64(1); id <= n; id++ {
		wg.Add(1)
		l.AppendFunc(benchRecs(id, payload), func(err error) {
			if err != nil {
				b.Error(err)
			}
			wg.Done()
		})
		if id%5000 == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var rep RecoveryReport
	for b.Loop() {
		l, rep, err = Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
	if rep.Messages != n {
		b.Fatalf("recovered %d messages", rep.Messages)
	}
	b.SetBytes(rep.Bytes)
	b.ReportMetric(float64(n)/rep.Duration.Seconds(), "msgs/s")
}
