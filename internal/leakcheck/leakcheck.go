// Package leakcheck fails a test binary whose goroutines outlive its tests.
// A package's TestMain calls Main; it is for tests only (stdlib only).
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and, when they passed, waits up to five seconds for
// every goroutine but the test binary's own to end; any left fail the run
// with their stacks. ignore lists substrings of stacks that are not ours to
// end (a client library's known leak), each with a reason at the call site.
func Main(m *testing.M, ignore ...string) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		left := Leftover(ignore...)
		for len(left) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // goroutines have no exit event to await
			left = Leftover(ignore...)
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines left behind after the tests:\n\n%s\n", strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// Leftover lists the stacks of the running goroutines but the caller's, the
// test framework's own (TestMain, the fuzzing engine's signal handler) and
// those matching ignore.
func Leftover(ignore ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, ".TestMain(") || strings.Contains(g, "os/signal.") || strings.Contains(g, "leakcheck.Leftover(") {
			continue
		}
		if containsAny(g, ignore) {
			continue
		}
		out = append(out, g)
	}
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
