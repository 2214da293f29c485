package bench

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestShare(t *testing.T) {
	total := 0
	for i := range 3 {
		total += share(1000, 3, i)
	}
	if total != 1000 || share(1000, 3, 0) != 334 || share(1000, 3, 2) != 333 {
		t.Errorf("share splits 1000/3 badly")
	}
}

func TestPacerScheduleCatchesUp(t *testing.T) {
	const rate = 2000 // 500µs apart
	base := time.Now()
	p := newPacer(rate, base)
	stop := make(chan struct{})
	var intended []int64
	for range 10 {
		due, ok := p.next(stop)
		if !ok {
			t.Fatal("stopped")
		}
		intended = append(intended, due)
	}
	for i, due := range intended {
		if want := base.UnixNano() + int64(i)*500_000; due != want {
			t.Fatalf("message %d intended at %d, want %d", i, due, want)
		}
	}
	if el := time.Since(base); el < 4500*time.Microsecond {
		t.Errorf("10 messages at 2000/s took only %v", el)
	}
	// Fall behind by 20ms: the next messages are due immediately (no
	// skipping), carrying their original schedule times.
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	for i := range 5 {
		due, _ := p.next(stop)
		if want := base.UnixNano() + int64(10+i)*500_000; due != want {
			t.Fatalf("catch-up message %d intended at %d, want %d", i, due, want)
		}
	}
	if el := time.Since(t0); el > 5*time.Millisecond {
		t.Errorf("catching up took %v; a late sender must not sleep", el)
	}
	close(stop)
	p2 := newPacer(0.5, time.Now().Add(time.Hour))
	if _, ok := p2.next(stop); ok {
		t.Error("pacer ignored stop")
	}
}

func refusedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "amqp://guest:guest@" + addr + "/"
}

func TestRunConnectionRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.URL = refusedURL(t)
	cfg.Duration = time.Second
	_, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "is the broker running?") || !strings.Contains(err.Error(), "herald serve") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "guest:guest") {
		t.Errorf("password leaked into the error: %v", err)
	}
}

func TestRunNotAnAMQPServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	cfg := DefaultConfig()
	cfg.URL = "amqp://" + l.Addr().String() + "/"
	start := time.Now()
	_, err = Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot connect") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v to fail", time.Since(start))
	}
	t.Log(err)
}

func TestRunBadConfig(t *testing.T) {
	_, err := Run(context.Background(), Config{Size: 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "--size") {
		t.Fatalf("err = %v", err)
	}
}
