package stomp

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines outlive the tests: every test's
// cleanup closes its clients and waits for its server's connections.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		left := leftover()
		for len(left) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			left = leftover()
		}
		if len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutines left behind:\n\n%s\n", strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// leftover lists the stacks of goroutines other than this one, the test
// framework's own (the fuzzing engine's signal handler) and a known one of
// the client library.
func leftover() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "stomp.TestMain") || strings.Contains(g, "os/signal.") {
			continue
		}
		// go-stomp v3.1.3's Unsubscribe leaves its waiter blocked for
		// good when it loses the race described at unsubscribe(); that
		// goroutine is the client library's, not ours.
		if strings.Contains(g, "go-stomp/stomp/v3.waitWithTimeout.func1") {
			continue
		}
		out = append(out, g)
	}
	return out
}
