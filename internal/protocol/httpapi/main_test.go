package httpapi

import (
	"testing"

	"github.com/heraldmq/herald/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
