package test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package if goroutines outlive the tests: every test
// closes its connections and shuts its server down, so after m.Run the
// goroutine count must return to what it was (give stragglers a moment to
// notice their sockets closed).
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines after the tests, %d before\n%s\n", n, before, leakReport(string(buf)))
			code = 1
		}
	}
	os.Exit(code)
}

// leakReport drops the main goroutine's own stack from a dump.
func leakReport(dump string) string {
	var out []string
	for _, g := range strings.Split(dump, "\n\n") {
		if strings.Contains(g, "test.TestMain") || strings.Contains(g, "runtime.Stack") {
			continue
		}
		out = append(out, g)
	}
	return strings.Join(out, "\n\n")
}
