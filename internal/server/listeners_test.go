package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// echo serves a connection until the client or the server ends it.
func echo(ctx context.Context, nc net.Conn) {
	defer nc.Close()
	go func() { <-ctx.Done(); _ = nc.Close() }()
	_, _ = io.Copy(nc, nc)
}

func TestListenServesAndShutdownDrains(t *testing.T) {
	l := New(nil, TLSConfig{})
	err := l.Listen([]Spec{
		{Name: "raw", Addr: "127.0.0.1:0", Conn: echo},
		{Name: "web", Addr: "127.0.0.1:0", HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })},
		{Name: "disabled", Addr: Off, Conn: echo},
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.Addr("disabled") != nil {
		t.Fatal("a listener with address off was bound")
	}
	nc, err := net.Dial("tcp", l.Addr("raw").String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo answered %q, %v", line, err)
	}
	resp, err := http.Get("http://" + l.Addr("web").String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("http answered %q", body)
	}

	streamsEnded := false
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx, func() { streamsEnded = true }); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if !streamsEnded {
		t.Fatal("Shutdown did not end the streams")
	}
	// The echo handler saw the context end and closed the connection.
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after shutdown")
	}
	if _, err := net.Dial("tcp", l.Addr("raw").String()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}

// A handler that ignores the shutdown is cut off once the deadline passes.
func TestShutdownClosesStragglersAtTheDeadline(t *testing.T) {
	l := New(nil, TLSConfig{})
	stubborn := func(_ context.Context, nc net.Conn) {
		_, _ = io.Copy(io.Discard, nc) // returns only when the socket is closed
	}
	if err := l.Listen([]Spec{{Name: "raw", Addr: "127.0.0.1:0", Conn: stubborn}}); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", l.Addr("raw").String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Wait until the server has taken the connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("connection never accepted")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Shutdown(ctx, nil); err != context.DeadlineExceeded {
		t.Fatalf("shutdown past its deadline returned %v, want DeadlineExceeded", err)
	}
}

func TestListenErrorsSayWhatToDo(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	l := New(nil, TLSConfig{})
	defer l.Shutdown(context.Background(), nil)
	err = l.Listen([]Spec{{Name: "amqp", Addr: taken.Addr().String(), Conn: echo, Hint: "pick another address with --amqp"}})
	if err == nil || !strings.Contains(err.Error(), "cannot listen for amqp") || !strings.Contains(err.Error(), "--amqp") {
		t.Fatalf("address in use: %v", err)
	}
	err = l.Listen([]Spec{{Name: "amqps", Addr: "127.0.0.1:0", TLS: true, Conn: echo}})
	if err == nil || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("TLS without a certificate: %v", err)
	}
}

func TestEnabled(t *testing.T) {
	for addr, want := range map[string]bool{"": false, "off": false, "OFF": false, ":5672": true, "127.0.0.1:0": true} {
		if got := Enabled(addr); got != want {
			t.Errorf("Enabled(%q) = %v, want %v", addr, got, want)
		}
	}
}

// A detached handler returns at once; the connection lives on until it
// calls ended, and Shutdown waits for that.
func TestDetachedConnectionsAreWaitedFor(t *testing.T) {
	l := New(nil, TLSConfig{})
	served := make(chan func(), 1)
	detached := func(ctx context.Context, nc net.Conn, ended func()) {
		// Owned by nobody's goroutine: ended is called from elsewhere.
		served <- func() { nc.Close(); ended() }
	}
	if err := l.Listen([]Spec{{Name: "raw", Addr: "127.0.0.1:0", ConnDetached: detached}}); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", l.Addr("raw").String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	end := <-served
	done := make(chan error, 1)
	go func() { done <- l.Shutdown(context.Background(), nil) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a detached connection lived", err)
	case <-time.After(100 * time.Millisecond):
	}
	end()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the connection ended")
	}
}
