package leakcheck

import (
	"strings"
	"testing"
)

func TestLeftoverSeesAndForgetsAGoroutine(t *testing.T) {
	started := make(chan struct{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		parkedForLeakcheckTest(started, stop)
	}()
	<-started // its stack names the function only once it runs
	found := func(ignore ...string) bool {
		for _, g := range Leftover(ignore...) {
			if strings.Contains(g, "parkedForLeakcheckTest") {
				return true
			}
		}
		return false
	}
	if !found() {
		t.Fatal("a parked goroutine is not listed")
	}
	if found("parkedForLeakcheckTest") {
		t.Fatal("an ignored goroutine is listed")
	}
	close(stop)
	<-done
	if found() {
		t.Fatal("an ended goroutine is still listed")
	}
}

//go:noinline
func parkedForLeakcheckTest(started chan<- struct{}, stop <-chan struct{}) {
	close(started)
	<-stop
}
