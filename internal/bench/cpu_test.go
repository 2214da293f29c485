package bench

import (
	"os"
	"testing"
)

func TestParseProcStatCPU(t *testing.T) {
	// comm with spaces and a ')' inside; utime=250 stime=50 ticks.
	line := "4242 (herald (serve) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n"
	got, err := parseProcStatCPU([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if got != 3.0 {
		t.Errorf("got %v CPU seconds, want 3.0", got)
	}
	if _, err := parseProcStatCPU([]byte("1 (x) S 1 2")); err == nil {
		t.Error("short line accepted")
	}
	if _, err := parseProcStatCPU([]byte("garbage")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestProcessCPUSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	a, err := ProcessCPU(0)
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 20_000_000 {
		x += i ^ x
	}
	_ = x
	b, err := ProcessCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if b < a {
		t.Errorf("CPU time went backwards: %v -> %v", a, b)
	}
}
