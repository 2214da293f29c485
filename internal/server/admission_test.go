package server

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestAdmissionHoldsNewConnections: while the admission wait holds, an
// accepted connection is not served; once it lets go it is, and shutdown
// ends a wait in progress.
func TestAdmissionHoldsNewConnections(t *testing.T) {
	l := New(nil, TLSConfig{})
	hold := make(chan struct{})
	waiting := make(chan struct{}, 1)
	l.SetAdmission(func(ctx context.Context) {
		waiting <- struct{}{}
		select {
		case <-hold:
		case <-ctx.Done():
		}
	})
	served := make(chan net.Conn, 4)
	err := l.Listen([]Spec{{Name: "raw", Addr: "127.0.0.1:0", Conn: func(ctx context.Context, nc net.Conn) {
		served <- nc
		<-ctx.Done()
		nc.Close()
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown(context.Background(), nil)
	c1, err := net.Dial("tcp", l.Addr("raw").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the accept loop never asked for admission")
	}
	// The accept loop is inside the wait: nothing may have been served.
	select {
	case <-served:
		t.Fatal("a connection was served while admission held it")
	default:
	}
	close(hold)
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not served once admission let it through")
	}
}

// TestAdmissionWaitEndsAtShutdown: a connection held at admission does not
// keep Shutdown waiting.
func TestAdmissionWaitEndsAtShutdown(t *testing.T) {
	l := New(nil, TLSConfig{})
	waiting := make(chan struct{}, 1)
	l.SetAdmission(func(ctx context.Context) {
		waiting <- struct{}{}
		<-ctx.Done()
	})
	err := l.Listen([]Spec{{Name: "raw", Addr: "127.0.0.1:0", Conn: func(ctx context.Context, nc net.Conn) { nc.Close() }}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr("raw").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-waiting
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Shutdown(ctx, nil); err != nil {
		t.Fatalf("shutdown with a connection held at admission: %v", err)
	}
}
