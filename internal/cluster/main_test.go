package cluster

import (
	"testing"

	"github.com/heraldmq/herald/internal/leakcheck"
)

// TestMain fails the run when goroutines outlive the tests: a closed node
// must stop Raft, its transport, its listener and its handlers.
func TestMain(m *testing.M) { leakcheck.Main(m) }
