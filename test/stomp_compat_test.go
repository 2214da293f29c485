package test

import (
	"net"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/heraldmq/herald/internal/server"
)

// TestSTOMPVersionMismatchListsVersions: a CONNECT accepting only versions
// Herald does not speak gets an ERROR whose version header lists the ones
// it does (STOMP 1.2, "Protocol Negotiation"), read with go-stomp's frame
// codec; then the connection closes.
func TestSTOMPVersionMismatchListsVersions(t *testing.T) {
	t.Parallel()
	s := startServer(t, func(c *server.Config) { c.STOMPAddr = "127.0.0.1:0" })
	nc, err := net.Dial("tcp", s.Addr("stomp").String())
	must(t, err)
	defer nc.Close()
	must(t, frame.NewWriter(nc).Write(frame.New(frame.CONNECT, frame.AcceptVersion, "2.0,2.1",
		frame.Host, "/", frame.Login, "guest", frame.Passcode, "guest")))
	must(t, nc.SetReadDeadline(time.Now().Add(waitTimeout)))
	r := frame.NewReader(nc)
	f, err := r.Read()
	must(t, err)
	if f.Command != frame.ERROR || f.Header.Get(frame.Message) != "Version mismatch" || f.Header.Get(frame.Version) != "1.0,1.1,1.2" {
		t.Fatalf("got %s %v %q", f.Command, f.Header, f.Body)
	}
	if f, err := r.Read(); err == nil {
		t.Fatalf("connection still open after the ERROR: %v", f)
	}
}
