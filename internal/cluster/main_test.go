package cluster

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run when goroutines outlive the tests: a closed node
// must stop Raft, its transport, its listener and its handlers.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		left := leftover()
		for len(left) > 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			left = leftover()
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutine leak: left behind\n\n%s\n", strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leftover lists the stacks of goroutines other than this one and the test
// framework's own (the fuzzing engine's signal handler).
func leftover() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "cluster.TestMain") || strings.Contains(g, "os/signal.") {
			continue
		}
		out = append(out, g)
	}
	return out
}
