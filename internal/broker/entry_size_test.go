package broker

import (
	"testing"
	"unsafe"
)

// A deep queue holds millions of entries; its memory figure (2 M parked
// messages under 512 MiB) depends on them staying small.
func TestEntryStaysSmall(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 48 {
		t.Fatalf("entry is %d bytes, want at most 48: keep per-delivery state in held", n)
	}
}
