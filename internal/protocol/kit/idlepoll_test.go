//go:build linux

package kit

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

func waitResume(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not resumed", what)
	}
}

func notResumed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: resumed", what)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestIdlePollerReadableResumes(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	srv, cli := tcpPair(t)
	resumed := make(chan struct{}, 1)
	k := p.NewParker(srv, func() { resumed <- struct{}{} })
	if k == nil {
		t.Fatal("no parker for a TCP connection")
	}
	for round := range 3 { // parked again after each wake-up (re-armed one-shot)
		if !k.Park(time.Time{}) {
			t.Fatal("park failed")
		}
		if p.Parked() != 1 {
			t.Fatalf("parked %d", p.Parked())
		}
		notResumed(t, resumed, "silent socket")
		if _, err := cli.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		waitResume(t, resumed, "readable socket")
		if p.Parked() != 0 {
			t.Fatalf("round %d: still parked", round)
		}
		var b [1]byte
		if _, err := srv.Read(b[:]); err != nil || b[0] != 'x' {
			t.Fatalf("read %q %v", b, err)
		}
	}
}

func TestIdlePollerBufferedBytesResumeAtOnce(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	srv, cli := tcpPair(t)
	cli.Write([]byte("early"))
	// Wait until the bytes are in the server's socket.
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(srv, b[:]); err != nil {
		t.Fatal(err)
	}
	resumed := make(chan struct{}, 1)
	k := p.NewParker(srv, func() { resumed <- struct{}{} })
	if !k.Park(time.Time{}) {
		t.Fatal("park failed")
	}
	waitResume(t, resumed, "socket with unread bytes")
}

func TestIdlePollerPeerCloseResumes(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	srv, cli := tcpPair(t)
	resumed := make(chan struct{}, 1)
	k := p.NewParker(srv, func() { resumed <- struct{}{} })
	k.Park(time.Time{})
	cli.Close()
	waitResume(t, resumed, "peer closed")
	var b [1]byte
	if _, err := srv.Read(b[:]); err != io.EOF {
		t.Fatalf("read after peer close: %v", err)
	}
}

func TestIdlePollerDeadlineResumes(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	srvA, _ := tcpPair(t)
	srvB, _ := tcpPair(t)
	a, b := make(chan struct{}, 1), make(chan struct{}, 1)
	ka := p.NewParker(srvA, func() { a <- struct{}{} })
	kb := p.NewParker(srvB, func() { b <- struct{}{} })
	start := time.Now()
	ka.Park(start.Add(time.Hour))
	kb.Park(start.Add(100 * time.Millisecond))
	waitResume(t, b, "deadline passed")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("resumed after %v, before the deadline", d)
	}
	notResumed(t, a, "deadline an hour away")
	if p.Parked() != 1 {
		t.Fatalf("parked %d, want 1", p.Parked())
	}
}

func TestIdlePollerWakeAfterClose(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	srv, _ := tcpPair(t)
	resumed := make(chan struct{}, 1)
	k := p.NewParker(srv, func() { resumed <- struct{}{} })
	k.Park(time.Now().Add(time.Hour))
	// A socket closed while parked leaves epoll without an event: the
	// closer wakes the connection itself.
	srv.Close()
	notResumed(t, resumed, "closed without Wake")
	k.Wake()
	waitResume(t, resumed, "Wake")
	if p.Parked() != 0 || len(p.byTime) != 0 {
		t.Fatalf("parked %d, deadlines %d", p.Parked(), len(p.byTime))
	}
	k.Wake() // not parked: nothing
	notResumed(t, resumed, "second Wake")
	if k.Park(time.Time{}) {
		t.Fatal("a closed socket was parked")
	}
}

func TestIdlePollerReleaseDeregisters(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	srv, cli := tcpPair(t)
	resumed := make(chan struct{}, 1)
	k := p.NewParker(srv, func() { resumed <- struct{}{} })
	k.Park(time.Time{})
	cli.Write([]byte("x"))
	waitResume(t, resumed, "readable")
	k.Release()
	// The descriptor is out of the epoll set: adding it again works, and
	// EPOLL_CTL_MOD would fail.
	var err error
	k.rc.Control(func(fd uintptr) { err = p.ps.arm(int(fd), 99, true) })
	if err != nil {
		t.Fatalf("re-add after release: %v", err)
	}
	k.rc.Control(func(fd uintptr) { p.ps.remove(int(fd)) })
}

func TestIdlePollerCloseResumesAllAndLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	p := NewIdlePoller(nil)
	const n = 20
	resumed := make(chan struct{}, n)
	var ks []*Parker
	for range n {
		srv, _ := tcpPair(t)
		k := p.NewParker(srv, func() { resumed <- struct{}{} })
		if !k.Park(time.Now().Add(time.Hour)) {
			t.Fatal("park failed")
		}
		ks = append(ks, k)
	}
	p.Close()
	for range n {
		waitResume(t, resumed, "poller closed")
	}
	if ks[0].Park(time.Time{}) {
		t.Fatal("parked on a closed poller")
	}
	p.Close() // twice is fine
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines left, %d before:\n%s", g, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestNewParkerRefusesNonSockets(t *testing.T) {
	p := NewIdlePoller(nil)
	defer p.Close()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if p.NewParker(a, func() {}) != nil {
		t.Fatal("a pipe got a parker")
	}
	var nilPoller *IdlePoller
	srv, _ := tcpPair(t)
	if nilPoller.NewParker(srv, func() {}) != nil {
		t.Fatal("a nil poller gave a parker")
	}
}
