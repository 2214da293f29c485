package mqtt

import (
	"testing"
	"unsafe"
)

// Every idle connection holds its conn, so its size class matters: 480
// bytes is a class of its own, the next is 512. A field that pushes conn
// past it costs every idle connection 32 bytes; make room (a small field
// next to the others at the end, a rarely used one in a lazily made
// struct such as pubState) rather than raise this.
func TestConnStructFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 480 {
		t.Fatalf("conn is %d bytes, over the 480-byte size class", n)
	}
}

// Every connection that is being sent something holds an outbox (made on
// use, dropped when idle): 416 bytes is its size class, the next 448.
func TestOutboxStructFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(outbox{}); n > 416 {
		t.Fatalf("outbox is %d bytes, over the 416-byte size class", n)
	}
}
