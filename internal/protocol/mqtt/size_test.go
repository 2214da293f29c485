package mqtt

import (
	"testing"
	"unsafe"
)

// Every idle connection holds its conn, so its size class matters: 512
// bytes is a class of its own, the next is 576. A field that pushes conn
// past it costs every idle connection 64 bytes; make room (a small field
// next to the others at the end, a rarely used one in a lazily made
// struct) rather than raise this.
func TestConnStructFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 512 {
		t.Fatalf("conn is %d bytes, over the 512-byte size class", n)
	}
}
