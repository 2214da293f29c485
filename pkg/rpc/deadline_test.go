package rpc

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

func TestDeadlineCtx(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	defer cancelParent()
	dl := time.Now().Add(30 * time.Millisecond)
	c := &deadlineCtx{Context: parent, deadline: dl}
	defer c.release()
	if d, ok := c.Deadline(); !ok || !d.Equal(dl) {
		t.Fatalf("deadline %v %v", d, ok)
	}
	if c.Value(ctxKey{}) != "v" {
		t.Fatal("parent's value lost")
	}
	if c.Err() != nil {
		t.Fatal("expired early")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed at the deadline")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("err %v", c.Err())
	}

	// The parent's cancellation reaches a started context; a released
	// one never starts a timer.
	c2 := &deadlineCtx{Context: parent, deadline: time.Now().Add(time.Hour)}
	done := c2.Done()
	cancelParent()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("parent's cancel not propagated")
	}
	c2.release()
	c3 := &deadlineCtx{Context: context.Background(), deadline: time.Now().Add(time.Hour)}
	c3.release()
	if c3.ctx != nil {
		t.Fatal("released context started a timer")
	}
	// A goroutine the handler left behind finds its context ended.
	if !errors.Is(c3.Err(), context.Canceled) {
		t.Fatalf("late Err %v", c3.Err())
	}
}
