package broker

import (
	"testing"
	"unsafe"
)

// The registry lists a connection under RabbitMQ's "peer -> local" name
// (made when listed, not stored), closes it by that name, shares one
// listener address among its connections, counts its messages after it
// is gone, and unregistering twice is harmless.
func TestConnectionRegistryEntry(t *testing.T) {
	b := New(Options{})
	closed := ""
	local := "127.0.0.1:1883"
	c1, un1 := b.RegisterConnection(ConnectionInfo{Protocol: "MQTT 3.1.1", Peer: "127.0.0.1:5000", Local: local,
		Close: func(reason string) { closed = reason }})
	// A Local built anew (as an adapter's RemoteAddr().String() is).
	c2, un2 := b.RegisterConnection(ConnectionInfo{Protocol: "MQTT 3.1.1", Peer: "127.0.0.1:5001", Local: string([]byte(local)),
		Name: "named"})
	if unsafe.StringData(c1.info.Local) != unsafe.StringData(c2.info.Local) {
		t.Fatal("the listener address is not shared")
	}
	list := b.Connections()
	if len(list) != 2 || list[0].Name != "127.0.0.1:5000 -> 127.0.0.1:1883" || list[1].Name != "named" {
		t.Fatalf("listed %+v", list)
	}
	if !b.CloseConnection("127.0.0.1:5000 -> 127.0.0.1:1883", "bye") || closed != "bye" {
		t.Fatalf("close by derived name: %q", closed)
	}
	c1.CountPublish()
	un1()
	un1()
	un2()
	if n := len(b.Connections()); n != 0 {
		t.Fatalf("%d connections left", n)
	}
	counts, _ := b.ProtocolCounters()
	if counts["MQTT 3.1.1"].Published != 1 {
		t.Fatalf("counts %+v", counts)
	}
}
