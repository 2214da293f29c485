package test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// rawClient is a hand-driven AMQP client on a plain TCP socket, for what
// a well-behaved library will not do (go silent, send garbage).
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *frame.Reader
	w  *frame.Writer
}

func dialRaw(t testing.TB, s *testServer) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.AMQPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	return &rawClient{t: t, nc: nc, r: frame.NewReader(nc, 1<<20), w: frame.NewWriter(nc)}
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) send(channel uint16, m frame.Method) {
	c.t.Helper()
	if err := c.w.WriteMethod(channel, m); err != nil {
		c.t.Fatal(err)
	}
	if err := c.w.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

// readMethod reads frames (skipping heartbeats) until a method arrives.
func (c *rawClient) readMethod() frame.Method {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		f, err := c.r.ReadFrame()
		if err != nil {
			c.t.Fatalf("read frame: %v", err)
		}
		if f.Type == frame.TypeHeartbeat {
			continue
		}
		if f.Type != frame.TypeMethod {
			c.t.Fatalf("frame type %d, want a method", f.Type)
		}
		m, err := frame.DecodeMethod(f.Payload)
		if err != nil {
			c.t.Fatal(err)
		}
		return m
	}
}

// handshake opens the connection as user/pass with the given heartbeat
// (seconds) and client capabilities.
func (c *rawClient) handshake(user, pass string, heartbeat uint16, caps frame.Table) {
	c.t.Helper()
	c.write(frame.ProtocolHeader[:])
	start, ok := c.readMethod().(*frame.ConnectionStart)
	if !ok {
		c.t.Fatal("expected connection.start")
	}
	if start.VersionMajor != 0 || start.VersionMinor != 9 || !strings.Contains(start.Mechanisms, "PLAIN") {
		c.t.Fatalf("connection.start %+v", start)
	}
	c.send(0, &frame.ConnectionStartOk{
		ClientProperties: frame.Table{"product": "raw-test", "capabilities": caps},
		Mechanism:        "PLAIN",
		Response:         "\x00" + user + "\x00" + pass,
		Locale:           "en_US",
	})
	m := c.readMethod()
	tune, ok := m.(*frame.ConnectionTune)
	if !ok {
		if cl, ok := m.(*frame.ConnectionClose); ok {
			c.t.Fatalf("refused: %d %s", cl.ReplyCode, cl.ReplyText)
		}
		c.t.Fatalf("expected connection.tune, got %s", m.Name())
	}
	c.send(0, &frame.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: heartbeat})
	c.send(0, &frame.ConnectionOpen{VirtualHost: "/"})
	if _, ok := c.readMethod().(*frame.ConnectionOpenOk); !ok {
		c.t.Fatal("expected connection.open-ok")
	}
}

// readUntilClosed reads until the server closes the socket and returns
// everything it sent. It fails if the socket stays open past the timeout.
func readUntilClosed(t testing.TB, nc net.Conn, timeout time.Duration) []byte {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	var buf bytes.Buffer
	_, err := io.Copy(&buf, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("server kept the socket open for %v (received %q)", timeout, buf.Bytes())
	}
	// io.Copy returns nil on EOF; a reset is also a close.
	return buf.Bytes()
}

func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := dialRaw(t, s)
	c.handshake("guest", "guest", 1, nil)
	silent := time.Now()
	// The server heartbeats us (every half interval when idle)...
	_ = c.nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	f, err := c.r.ReadFrame()
	if err != nil {
		t.Fatalf("no heartbeat from the server: %v", err)
	}
	if f.Type != frame.TypeHeartbeat || f.Channel != 0 || len(f.Payload) != 0 {
		t.Fatalf("frame type %d on channel %d, want an empty heartbeat on channel 0", f.Type, f.Channel)
	}
	// ...and drops us once we have been silent for two intervals.
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(4 * time.Second))
		f, err := c.r.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("silent client still connected after %v", time.Since(silent))
			}
			break
		}
		if f.Type != frame.TypeHeartbeat {
			t.Fatalf("unexpected frame type %d", f.Type)
		}
	}
	if d := time.Since(silent); d < 1500*time.Millisecond || d > 6*time.Second {
		t.Fatalf("dropped after %v, want about 2s (two heartbeat intervals)", d)
	}
}

// TestHeartbeatKeepsAlive: a client that heartbeats but is otherwise idle
// for longer than the timeout stays connected.
func TestHeartbeatKeepsAlive(t *testing.T) {
	t.Parallel()
	s := startServer(t, withHeartbeat(time.Second))
	c := s.dialConfig(t, amqp.Config{Heartbeat: time.Second})
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	select {
	case e := <-closed:
		t.Fatalf("idle heartbeating connection closed: %v", e)
	case <-time.After(3 * time.Second): // longer than the 2s timeout: absence must be waited for
	}
	assertAlive(t, c)
}

func TestAuthFailureCloseCapability(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := dialRaw(t, s)
	c.write(frame.ProtocolHeader[:])
	if _, ok := c.readMethod().(*frame.ConnectionStart); !ok {
		t.Fatal("expected connection.start")
	}
	c.send(0, &frame.ConnectionStartOk{
		ClientProperties: frame.Table{"capabilities": frame.Table{"authentication_failure_close": true}},
		Mechanism:        "PLAIN", Response: "\x00guest\x00bad", Locale: "en_US",
	})
	cl, ok := c.readMethod().(*frame.ConnectionClose)
	if !ok {
		t.Fatal("expected connection.close")
	}
	if cl.ReplyCode != frame.AccessRefused || !strings.HasPrefix(cl.ReplyText, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN") {
		t.Fatalf("close %d %q", cl.ReplyCode, cl.ReplyText)
	}
	c.send(0, &frame.ConnectionCloseOk{})
	readUntilClosed(t, c.nc, waitTimeout)
}

func TestWrongProtocolHeader(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	for _, hdr := range []string{"AMQP\x00\x00\x08\x00", "HTTP/1.1", "AMQP\x01\x01\x00\x09", "AMQP\x00\x00\x09\x00"} {
		c := dialRaw(t, s)
		c.write([]byte(hdr))
		got := readUntilClosed(t, c.nc, waitTimeout)
		if string(got) != "AMQP\x00\x00\x09\x01" {
			t.Errorf("header %q: server answered %q, want exactly AMQP 0-9-1's header then close", hdr, got)
		}
	}
	// A full HTTP request gets the same answer.
	c := dialRaw(t, s)
	c.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if got := readUntilClosed(t, c.nc, waitTimeout); string(got) != "AMQP\x00\x00\x09\x01" {
		t.Errorf("HTTP request: got %q", got)
	}
}

func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	good := s.dial(t)
	goodCh := mustChannel(t, good)
	q := tempQueue(t, goodCh)
	ds := mustConsume(t, goodCh, q, "", true)
	check := func(what string) {
		t.Helper()
		mustPublish(t, goodCh, "", q, amqp.Publishing{Body: []byte(what)})
		if d := recv(t, ds); string(d.Body) != what {
			t.Fatalf("%s: got %q", what, d.Body)
		}
	}
	garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0xff, 0x00, 0x42}, 200)

	// Instead of a protocol header.
	c := dialRaw(t, s)
	c.write(garbage)
	if got := readUntilClosed(t, c.nc, waitTimeout); string(got) != "AMQP\x00\x00\x09\x01" {
		t.Fatalf("garbage header: got %q", got)
	}
	check("after-garbage-header")

	// After a valid header, instead of connection.start-ok.
	c = dialRaw(t, s)
	c.write(frame.ProtocolHeader[:])
	if _, ok := c.readMethod().(*frame.ConnectionStart); !ok {
		t.Fatal("expected connection.start")
	}
	c.write(garbage)
	readUntilClosed(t, c.nc, waitTimeout)
	check("after-garbage-handshake")

	// On an open connection: an unknown frame type is a 501 FRAME_ERROR.
	for name, junk := range map[string][]byte{
		"unknown-type":  garbage,
		"bad-frame-end": {frame.TypeMethod, 0, 0, 0, 0, 0, 4, 0, 10, 0, 10, 0x00},
		"too-large":     {frame.TypeBody, 0, 1, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3},
	} {
		c = dialRaw(t, s)
		c.handshake("guest", "guest", 0, nil)
		c.write(junk)
		cl, ok := c.readMethod().(*frame.ConnectionClose)
		if !ok || cl.ReplyCode != frame.FrameError {
			t.Fatalf("%s: expected connection.close 501, got %+v", name, cl)
		}
		readUntilClosed(t, c.nc, waitTimeout)
		check("after-" + name)
	}
	assertAlive(t, good)
}

func TestServerShutdownForcesClose(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dial(t)
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	ds := mustConsume(t, ch, q, "", false)
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- s.Shutdown(ctx) }()
	e := waitClose(t, closed)
	if e.Code != amqp.ConnectionForced || !e.Server || !strings.Contains(e.Reason, "CONNECTION_FORCED") {
		t.Fatalf("close %+v, want 320 CONNECTION_FORCED from the server", e)
	}
	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Fatalf("shutdown: %v (the client answered close-ok; it should finish before the deadline)", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("shutdown did not finish")
	}
	if _, ok := <-ds; ok {
		t.Fatal("delivery channel still open")
	}
	// New connections are refused.
	if _, err := amqp.Dial(s.URL); err == nil {
		t.Fatal("dial succeeded after shutdown")
	}
}

func TestChannelMaxAndReopen(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := s.dialConfig(t, amqp.Config{ChannelMax: 3})
	var chs []*amqp.Channel
	for i := 0; i < 3; i++ {
		chs = append(chs, mustChannel(t, c))
	}
	// amqp091-go enforces channel_max itself.
	if _, err := c.Channel(); err == nil {
		t.Fatal("opened a channel beyond channel_max")
	}
	// Closing one frees its number for reuse.
	must(t, chs[1].Close())
	ch := mustChannel(t, c)
	q := tempQueue(t, ch)
	mustPublish(t, ch, "", q, amqp.Publishing{Body: []byte("x")})
	if d, ok, err := ch.Get(q, true); err != nil || !ok || string(d.Body) != "x" {
		t.Fatalf("reopened channel: %v %v", ok, err)
	}
}

// TestRawChannelMaxExceeded: opening a channel above the negotiated
// channel_max is a 530 NOT_ALLOWED connection error.
func TestRawChannelMaxExceeded(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	c := dialRaw(t, s)
	c.write(frame.ProtocolHeader[:])
	c.readMethod()
	c.send(0, &frame.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	tune := c.readMethod().(*frame.ConnectionTune)
	c.send(0, &frame.ConnectionTuneOk{ChannelMax: 2, FrameMax: tune.FrameMax})
	c.send(0, &frame.ConnectionOpen{VirtualHost: "/"})
	c.readMethod()
	c.send(2, &frame.ChannelOpen{})
	if _, ok := c.readMethod().(*frame.ChannelOpenOk); !ok {
		t.Fatal("expected channel.open-ok")
	}
	c.send(3, &frame.ChannelOpen{})
	cl, ok := c.readMethod().(*frame.ConnectionClose)
	if !ok || cl.ReplyCode != frame.NotAllowed {
		t.Fatalf("got %+v, want connection.close 530", cl)
	}
}
