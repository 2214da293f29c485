package streamlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func reportStream(b *testing.B, s *Stream, start time.Time) {
	st := s.Stats()
	secs := time.Since(start).Seconds()
	b.ReportMetric(float64(st.Appends)/secs, "appends/s")
	b.ReportMetric(float64(st.Chunks)/secs, "fsyncs/s")
	if st.Chunks > 0 {
		b.ReportMetric(float64(st.Appends)/float64(st.Chunks), "appends/fsync")
	}
}

// BenchmarkAppendDurable: many appenders, each waiting for its record to
// be durable before appending the next (a publisher per goroutine
// waiting for each confirm); group commit makes them share fsyncs. On the
// real file system in the test's temp dir.
func BenchmarkAppendDurable(b *testing.B) {
	for _, size := range []int{128, 1024} {
		for _, appenders := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%dB/%dappenders", size, appenders), func(b *testing.B) {
				s, err := Open(b.TempDir(), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				rec := make([]byte, size)
				b.SetBytes(int64(size))
				start := time.Now()
				var wg sync.WaitGroup
				work := make(chan struct{}, appenders)
				go func() {
					for b.Loop() {
						work <- struct{}{}
					}
					close(work)
				}()
				for range appenders {
					wg.Add(1)
					go func() {
						defer wg.Done()
						ch := make(chan error, 1)
						done := func(_ uint64, err error) { ch <- err }
						recs := [][]byte{rec}
						for range work {
							s.AppendAsync(recs, time.Now(), done)
							if err := <-ch; err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				reportStream(b, s, start)
			})
		}
	}
}

// BenchmarkAppendPipelined: one appender keeping up to 1,000 appends in
// flight (a publisher with a confirm window), answered as chunks become
// durable.
func BenchmarkAppendPipelined(b *testing.B) {
	for _, size := range []int{128, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			rec := [][]byte{make([]byte, size)}
			window := make(chan struct{}, 1000)
			var wg sync.WaitGroup
			done := func(_ uint64, err error) {
				if err != nil {
					b.Error(err)
				}
				<-window
				wg.Done()
			}
			b.SetBytes(int64(size))
			start := time.Now()
			for b.Loop() {
				window <- struct{}{}
				wg.Add(1)
				s.AppendAsync(rec, time.Now(), done)
			}
			wg.Wait()
			reportStream(b, s, start)
		})
	}
}

// BenchmarkReplay reads 200,000 records of 128 B from the start, from disk.
func BenchmarkReplay(b *testing.B) {
	const n = 200_000
	s, err := Open(b.TempDir(), Options{MaxSegmentBytes: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = make([]byte, 128)
	}
	for range n / len(batch) {
		if _, err := s.Append(batch, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(n * 128)
	start := time.Now()
	for b.Loop() {
		r, err := s.NewReader(First())
		if err != nil {
			b.Fatal(err)
		}
		got := 0
		for {
			_, _, _, err := r.Next()
			if errors.Is(err, ErrCaughtUp) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			got++
		}
		r.Close()
		if got != n {
			b.Fatalf("read %d", got)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkTailLatency: one appender at about 1,000 appends/s, each
// waiting for durability, and a tailing reader woken by Changed; reports
// the append-to-read latency (fsync included) percentiles.
func BenchmarkTailLatency(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r, err := s.NewReader(Next())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var lat []time.Duration
	readDone := make(chan error)
	go func() {
		for {
			_, ts, rec, err := r.NextWait(context.Background())
			if err != nil || len(rec) == 0 { // the empty record ends the run
				readDone <- err
				return
			}
			lat = append(lat, time.Since(ts))
		}
	}()
	rec := [][]byte{make([]byte, 128)}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for b.Loop() {
		<-tick.C
		if _, err := s.Append(rec, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Append([][]byte{{}}, time.Now()); err != nil {
		b.Fatal(err)
	}
	if err := <-readDone; err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}
