package stomp

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

func TestHeartBeats(t *testing.T) {
	e := newEnv(t, Config{Heartbeat: 50 * time.Millisecond})
	// The server sends heart-beats at the negotiated interval.
	r := e.raw()
	f := r.connect("heart-beat:0,100\n")
	if f.Value("heart-beat") != "100,0" {
		t.Fatalf("CONNECTED heart-beat %q", f.Value("heart-beat"))
	}
	if hb := r.read(true); hb != nil {
		t.Fatalf("expected a heart-beat, got %v", hb)
	}
	// A client that promised heart-beats and sends nothing is dropped.
	r2 := e.raw()
	f = r2.connect("heart-beat:100,0\n")
	if f.Value("heart-beat") != "0,100" {
		t.Fatalf("CONNECTED heart-beat %q", f.Value("heart-beat"))
	}
	start := time.Now()
	if f := r2.read(false); f.Command != "ERROR" || f.Value("message") != "Heart-beat timeout" {
		t.Fatalf("got %v", f)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("dropped after %v, too early", d)
	}
	r2.expectClosed()
	// The real client with heart-beats both ways stays connected across
	// several intervals (its heart-beats keep the server's deadline fresh).
	// Intervals wide enough for a loaded machine under -race (the server
	// allows two of the client's intervals; the client one interval and
	// its HeartBeatError).
	c := e.dial(stomp.ConnOpt.HeartBeat(400*time.Millisecond, 400*time.Millisecond), stomp.ConnOpt.HeartBeatError(time.Second))
	sub, err := c.Subscribe("/queue/hb", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(1300 * time.Millisecond)
	for time.Now().Before(deadline) {
		// Wait on the subscription: a dropped connection would close it.
		select {
		case m := <-sub.C:
			t.Fatalf("connection failed: %v", m)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := c.Send("/queue/hb", "", []byte("alive"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); string(m.Body) != "alive" {
		t.Fatalf("got %q", m.Body)
	}
}

func TestBadFrames(t *testing.T) {
	e := newEnv(t, Config{Limits: frame.Limits{MaxBodySize: 1024}})
	ok := e.dial()
	okSub, err := ok.Subscribe("/queue/iso", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ in, message, detail string }{
		{"FROB\n\n\x00", "Bad command", "FROB"},
		{"MESSAGE\ndestination:/queue/a\n\n\x00", "Bad command", "MESSAGE"},
		{"SEND\n\nno destination\x00", "Missing header", "destination"},
		{"SUBSCRIBE\ndestination:/queue/a\n\n\x00", "Missing header", "'id'"},
		{"SUBSCRIBE\nid:1\ndestination:/queue/a\nack:sometimes\n\n\x00", "Invalid header", "ack must be"},
		{"SEND\ndestination:/queue/a\nbad\\qescape:x\n\n\x00", "Invalid frame", "escape"},
		{"SEND\ndestination:/queue/a\ncontent-length:5000\n\n", "Frame too large", "body too large"},
		{"SEND\ndestination:/queue/a\n\n" + strings.Repeat("x", 2000) + "\x00", "Frame too large", "body too large"},
		{"SEND\ndestination:/queue/a\ntransaction:none\n\n\x00", "Invalid transaction", "none"},
		{"COMMIT\ntransaction:none\n\n\x00", "Invalid transaction", "none"},
		{"ACK\nid:garbage\n\n\x00", "Invalid message-id", "garbage"},
		{"UNSUBSCRIBE\nid:nope\n\n\x00", "Bad subscription", "nope"},
		{"CONNECT\naccept-version:1.2\n\n\x00", "Illegal command", "Already connected"},
		{"SEND\ndestination:/queue/a\npriority:high\n\n\x00", "Invalid header", "priority"},
	}
	for _, tc := range cases {
		r := e.raw()
		r.connect("")
		r.write(tc.in)
		f := r.read(false)
		if f.Command != "ERROR" || f.Value("message") != tc.message || !strings.Contains(string(f.Body), tc.detail) {
			t.Errorf("%q: got %v %q", tc.in, f, f.Body)
		}
		r.expectClosed()
	}
	// The receipt of a failed frame is named in its ERROR.
	r := e.raw()
	r.connect("")
	r.write("SEND\ndestination:/nowhere\nreceipt:r9\n\n\x00")
	if f := r.read(false); f.Command != "ERROR" || f.Value("receipt-id") != "r9" {
		t.Errorf("got %v", f)
	}
	// Nobody else noticed.
	if err := ok.Send("/queue/iso", "", []byte("fine"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, okSub); string(m.Body) != "fine" {
		t.Fatalf("got %q", m.Body)
	}
}

func TestReceiptsAndDisconnect(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.raw()
	r.connect("")
	r.write("SUBSCRIBE\nid:a\ndestination:/topic/x\nreceipt:1\n\n\x00BEGIN\ntransaction:t\nreceipt:2\n\n\x00ABORT\ntransaction:t\nreceipt:3\n\n\x00UNSUBSCRIBE\nid:a\nreceipt:4\n\n\x00DISCONNECT\nreceipt:5\n\n\x00")
	for _, want := range []string{"1", "2", "3", "4", "5"} {
		if f := r.read(false); f.Command != "RECEIPT" || f.Value("receipt-id") != want {
			t.Fatalf("want receipt %s, got %v", want, f)
		}
	}
	r.expectClosed()
}

func TestShutdown(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.raw()
	r.connect("")
	c := e.dial()
	sub, err := c.Subscribe("/queue/s", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// go-stomp registers a subscription only when it writes SUBSCRIBE; a
	// receipted SEND after it makes sure that happened before the ERROR.
	sendN(t, c, "/queue/barrier", 1)
	idle := e.raw() // connected, but never sent CONNECT
	waitFor(t, "the idle connection to be accepted", func() bool { return e.h.ConnectionCount() == 3 })
	e.cancel()
	if f := idle.read(false); f.Command != "ERROR" || f.Value("message") != "server shutting down" {
		t.Fatalf("pre-CONNECT client got %v", f)
	}
	f := r.read(false)
	if f.Command != "ERROR" || f.Value("message") != "server shutting down" {
		t.Fatalf("got %v", f)
	}
	r.expectClosed()
	select {
	case m := <-sub.C:
		if m == nil || m.Err == nil || !strings.Contains(m.Err.Error(), "server shutting down") {
			t.Fatalf("go-stomp got %v", m)
		}
	case <-time.After(waitTimeout):
		t.Fatal("go-stomp client not told")
	}
	e.wg.Wait()
	if n := e.h.ConnectionCount(); n != 0 {
		t.Errorf("%d connections left", n)
	}
}

func TestSTOMP10(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.raw()
	r.fr.SetVersion(frame.V10)
	r.write("CONNECT\nlogin:guest\npasscode:guest\n\n\x00")
	if f := r.read(false); f.Command != "CONNECTED" || f.Value("version") != "" {
		t.Fatalf("got %v", f)
	}
	// 1.0: no escaping, the destination is the subscription id, ACK by message-id.
	r.write("SUBSCRIBE\ndestination:/queue/ten\nack:client\n\n\x00SEND\ndestination:/queue/ten\nk:a\\cb\n\nbody\x00")
	m := r.read(false)
	if m.Command != "MESSAGE" || m.Value("subscription") != "/queue/ten" || m.Value("k") != `a\cb` || string(m.Body) != "body" {
		t.Fatalf("got %v %q", m, m.Body)
	}
	r.write("ACK\nmessage-id:" + m.Value("message-id") + "\nreceipt:a\n\n\x00")
	if f := r.read(false); f.Command != "RECEIPT" {
		t.Fatalf("got %v", f)
	}
	if s := e.queue("ten").Stats(); s.Acks != 1 {
		t.Fatalf("%+v", s)
	}
}

func TestTransactionBounds(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.raw()
	r.connect("")
	var b strings.Builder
	for i := range maxTransactions + 1 {
		fmt.Fprintf(&b, "BEGIN\ntransaction:t%d\n\n\x00", i)
	}
	r.write(b.String())
	if f := r.read(false); f.Command != "ERROR" || f.Value("message") != "Too many transactions" {
		t.Fatalf("got %v", f)
	}
	r.expectClosed()
}
