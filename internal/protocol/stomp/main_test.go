package stomp

import (
	"testing"

	"github.com/heraldmq/herald/internal/leakcheck"
)

// TestMain fails the run if goroutines outlive the tests: every test's
// cleanup closes its clients and waits for its server's connections.
// go-stomp v3.1.3's Unsubscribe leaves its waiter blocked for good when it
// loses the race described at unsubscribe(); that goroutine is the client
// library's, not ours.
func TestMain(m *testing.M) { leakcheck.Main(m, "go-stomp/stomp/v3.waitWithTimeout.func1") }
