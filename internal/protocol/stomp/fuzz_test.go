package stomp

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
)

// FuzzParsers covers the small header parsers.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{"/queue/a", "/topic/a.b.#", "/exchange/amq.direct/k/x", "/exchange/e", "/amq/queue/q",
		"/temp-queue/t", "/reply-queue/amq.gen-1", "/queue/", "x", "10,20", "0,0", " 5 , 6 ", "T_0@@17", "T_a@@b@@3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDestination(s); err == nil {
			if d.name == "" {
				t.Fatalf("%q parsed with an empty name", s)
			}
		}
		if x, y, ok := parseHeartBeat(s); ok && (x < 0 || y < 0) {
			t.Fatalf("%q: negative heart-beat", s)
		}
		parseTag(s)
	})
}

// FuzzSession feeds arbitrary bytes to a logged-in session, whole and in
// two halves: whatever arrives, the connection answers with frames and
// ends without panicking or hanging, and the broker holds nothing of it
// afterwards.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"SUBSCRIBE\nid:0\ndestination:/queue/a\nack:client\n\n\x00SEND\ndestination:/queue/a\n\nx\x00",
		"SEND\ndestination:/topic/t\nreply-to:/temp-queue/r\n\nhi\x00SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\x00",
		"BEGIN\ntransaction:t\n\n\x00SEND\ndestination:/queue/b\ntransaction:t\n\n\x00COMMIT\ntransaction:t\n\n\x00",
		"SUBSCRIBE\nid:0\ndestination:/queue/a\nack:client-individual\n\n\x00ACK\nid:T_0@@1\n\n\x00NACK\nid:T_0@@2\n\n\x00",
		"UNSUBSCRIBE\nid:0\n\n\x00",
		"FROB\n\n\x00",
		"\n\n\nDISCONNECT\nreceipt:1\n\n\x00",
	}
	for _, s := range seeds {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		b := broker.New(broker.Options{Logger: log})
		h := NewHandler(Config{HandshakeTimeout: time.Second}, b, auth.NewDefaultUsers(), log)
		client, server := net.Pipe()
		// net.Pipe's addresses are not loopback; guest needs one.
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeConn(context.Background(), loopbackConn{server})
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, client)
		}()
		cut := int(split) % (len(data) + 1)
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write([]byte("CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00"))
		_, _ = client.Write(data[:cut])
		_, _ = client.Write(data[cut:])
		client.Close()
		<-done
		<-drained
		for _, q := range b.VHost("/").Queues() {
			if q.Exclusive() {
				t.Fatalf("exclusive queue %s outlived its connection", q.Name())
			}
			if s := q.Stats(); s.Unacked != 0 || s.Consumers != 0 {
				t.Fatalf("queue %s: %+v after the connection ended", q.Name(), s)
			}
		}
	})
}

type loopbackConn struct{ net.Conn }

func (loopbackConn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
