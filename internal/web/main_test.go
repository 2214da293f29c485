package web_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines outlive the tests (sockets,
// writers, watchdogs and SSE streams must all end).
func TestMain(m *testing.M) {
	before := goroutines()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for goroutines() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // goroutines have no exit event to await
		}
		if n := goroutines(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "%d goroutines left behind (had %d):\n%s\n", n, before, leaked(string(buf)))
			code = 1
		}
	}
	os.Exit(code)
}

// goroutines counts the running goroutines but the signal handler's,
// which `go test -fuzz` starts (os/signal.Notify) and never ends.
func goroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "os/signal.signal_recv") {
			n++
		}
	}
	return n
}

func leaked(stacks string) string {
	var out []string
	for _, g := range strings.Split(stacks, "\n\n") {
		if !strings.Contains(g, "TestMain") && !strings.Contains(g, "runtime.goexit") || strings.Contains(g, "herald") || strings.Contains(g, "net/http") {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}
