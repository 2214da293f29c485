package web_test

import (
	"testing"

	"github.com/heraldmq/herald/internal/leakcheck"
)

// TestMain fails the run if goroutines outlive the tests (sockets,
// writers, watchdogs and SSE streams must all end).
func TestMain(m *testing.M) { leakcheck.Main(m) }
