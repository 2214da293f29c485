package amqp091

// Unit tests of the AMQP adapter: a Handler on a loopback socket, driven
// frame by frame with the package's own codec, so that each protocol rule
// (handshake, negotiation, errors and their reply codes) is checked in
// isolation. test/ drives the same code with amqp091-go end to end.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// peer is the client side of one connection.
type peer struct {
	t  *testing.T
	nc net.Conn
	r  *frame.Reader
	w  *frame.Writer
}

// serve starts a handler on a loopback listener and returns a dialer for it.
func serve(t *testing.T, cfg Config) func() *peer {
	t.Helper()
	b := broker.New(broker.Options{})
	users := auth.NewDefaultUsers()
	users.SetBcryptCost(4)
	h := NewHandler(cfg, b, users, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.ServeConn(ctx, nc)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
		b.Close()
	})
	return func() *peer {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nc.Close() })
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		return &peer{t: t, nc: nc, r: frame.NewReader(nc, frame.MinSize*64), w: frame.NewWriter(nc)}
	}
}

func (p *peer) send(channel uint16, m frame.Method) {
	p.t.Helper()
	if err := p.w.WriteMethod(channel, m); err != nil {
		p.t.Fatal(err)
	}
	if err := p.w.Flush(); err != nil {
		p.t.Fatal(err)
	}
}

// next reads the next method, skipping heartbeats.
func (p *peer) next() (uint16, frame.Method) {
	p.t.Helper()
	for {
		f, err := p.r.ReadFrame()
		if err != nil {
			p.t.Fatalf("read: %v", err)
		}
		if f.Type == frame.TypeHeartbeat {
			continue
		}
		if f.Type != frame.TypeMethod {
			p.t.Fatalf("frame type %d, want a method", f.Type)
		}
		m, err := frame.DecodeMethod(f.Payload)
		if err != nil {
			p.t.Fatal(err)
		}
		return f.Channel, m
	}
}

func expect[M frame.Method](p *peer) M {
	p.t.Helper()
	_, m := p.next()
	got, ok := m.(M)
	if !ok {
		var want M
		p.t.Fatalf("got %T %+v, want %T", m, m, want)
	}
	return got
}

// open runs the handshake as user and returns connection.tune.
func (p *peer) open(user, pass string) *frame.ConnectionTune {
	p.t.Helper()
	if _, err := p.nc.Write(frame.ProtocolHeader[:]); err != nil {
		p.t.Fatal(err)
	}
	start := expect[*frame.ConnectionStart](p)
	if !bytes.Contains([]byte(start.Mechanisms), []byte("PLAIN")) {
		p.t.Fatalf("mechanisms %q lack PLAIN", start.Mechanisms)
	}
	p.send(0, &frame.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00" + user + "\x00" + pass, Locale: "en_US",
		ClientProperties: frame.Table{"product": "adapter_test"}})
	_, m := p.next()
	tune, ok := m.(*frame.ConnectionTune)
	if !ok {
		return nil
	}
	p.send(0, &frame.ConnectionTuneOk{ChannelMax: tune.ChannelMax, FrameMax: tune.FrameMax, Heartbeat: 0})
	p.send(0, &frame.ConnectionOpen{VirtualHost: "/"})
	expect[*frame.ConnectionOpenOk](p)
	return tune
}

func TestHandshakeNegotiatesTheConfiguredLimits(t *testing.T) {
	dial := serve(t, Config{FrameMax: 65536, ChannelMax: 16, Heartbeat: 5 * time.Second})
	p := dial()
	tune := p.open("guest", "guest")
	if tune == nil {
		t.Fatal("no connection.tune")
	}
	if tune.FrameMax != 65536 || tune.ChannelMax != 16 || tune.Heartbeat != 5 {
		t.Fatalf("tune %+v, want frame_max 65536, channel_max 16, heartbeat 5", tune)
	}
	p.send(1, &frame.ChannelOpen{})
	expect[*frame.ChannelOpenOk](p)
	p.send(0, &frame.ConnectionClose{ReplyCode: frame.ReplySuccess, ReplyText: "bye"})
	expect[*frame.ConnectionCloseOk](p)
}

// A client speaking another protocol version gets the server's header
// back and the socket closed (AMQP 0-9-1 section 4.2.2).
func TestWrongProtocolHeaderIsAnsweredWithOurs(t *testing.T) {
	p := serve(t, Config{})()
	if _, err := p.nc.Write([]byte("AMQP\x01\x01\x00\x0a")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(p.nc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, frame.ProtocolHeader[:]) {
		t.Fatalf("answer %q, want %q", got, frame.ProtocolHeader[:])
	}
}

// A client that does not announce the authentication_failure_close
// capability just sees the socket close, as RabbitMQ does it.
func TestWrongPasswordClosesTheSocket(t *testing.T) {
	p := serve(t, Config{})()
	if _, err := p.nc.Write(frame.ProtocolHeader[:]); err != nil {
		t.Fatal(err)
	}
	expect[*frame.ConnectionStart](p)
	p.send(0, &frame.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00wrong", Locale: "en_US"})
	if f, err := p.r.ReadFrame(); err == nil {
		t.Fatalf("got a frame of type %d after a refused login, want the socket closed", f.Type)
	}
}

// With the capability, the refusal is connection.close 403 ACCESS_REFUSED.
func TestWrongPasswordCloseCarriesAccessRefused(t *testing.T) {
	p := serve(t, Config{})()
	if _, err := p.nc.Write(frame.ProtocolHeader[:]); err != nil {
		t.Fatal(err)
	}
	expect[*frame.ConnectionStart](p)
	p.send(0, &frame.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00wrong", Locale: "en_US",
		ClientProperties: frame.Table{"capabilities": frame.Table{"authentication_failure_close": true}}})
	cl := expect[*frame.ConnectionClose](p)
	if cl.ReplyCode != frame.AccessRefused {
		t.Fatalf("reply code %d (%s), want 403", cl.ReplyCode, cl.ReplyText)
	}
}

func TestChannelAboveChannelMaxIsAConnectionError(t *testing.T) {
	p := serve(t, Config{ChannelMax: 4})()
	p.open("guest", "guest")
	p.send(5, &frame.ChannelOpen{})
	cl := expect[*frame.ConnectionClose](p)
	if cl.ReplyCode != frame.ChannelError && cl.ReplyCode != frame.NotAllowed {
		t.Fatalf("channel 5 of 4: reply %d %q, want 504 or 530", cl.ReplyCode, cl.ReplyText)
	}
}

// A method on a channel that was never opened is a connection error
// (504 CHANNEL_ERROR), not a silent drop.
func TestMethodOnUnopenedChannel(t *testing.T) {
	p := serve(t, Config{})()
	p.open("guest", "guest")
	p.send(3, &frame.QueueDeclare{Queue: "q"})
	cl := expect[*frame.ConnectionClose](p)
	if cl.ReplyCode != frame.ChannelError {
		t.Fatalf("reply %d %q, want 504", cl.ReplyCode, cl.ReplyText)
	}
}

// A channel-level error closes the channel with the soft code and leaves
// the connection and its other channels working.
func TestChannelErrorLeavesTheConnectionUp(t *testing.T) {
	p := serve(t, Config{})()
	p.open("guest", "guest")
	p.send(1, &frame.ChannelOpen{})
	expect[*frame.ChannelOpenOk](p)
	p.send(2, &frame.ChannelOpen{})
	expect[*frame.ChannelOpenOk](p)
	p.send(1, &frame.QueueDeclare{Queue: "missing", Passive: true})
	ch, m := p.next()
	cl, ok := m.(*frame.ChannelClose)
	if !ok || ch != 1 || cl.ReplyCode != frame.NotFound {
		t.Fatalf("got %T %+v on channel %d, want channel.close 404 on 1", m, m, ch)
	}
	p.send(1, &frame.ChannelCloseOk{})
	p.send(2, &frame.QueueDeclare{Queue: "there"})
	ok2 := expect[*frame.QueueDeclareOk](p)
	if ok2.Queue != "there" {
		t.Fatalf("declare-ok %+v", ok2)
	}
}

// A frame larger than the negotiated frame_max is a hard 501 FRAME_ERROR.
func TestOversizedFrameIsAFrameError(t *testing.T) {
	p := serve(t, Config{FrameMax: frame.MinSize})()
	p.open("guest", "guest")
	p.send(1, &frame.ChannelOpen{})
	expect[*frame.ChannelOpenOk](p)
	big := make([]byte, 0, 2*frame.MinSize)
	big = append(big, frame.TypeBody, 0, 1)
	size := 2 * frame.MinSize
	big = append(big, byte(size>>24), byte(size>>16), byte(size>>8), byte(size))
	big = append(big, make([]byte, size)...)
	big = append(big, frame.End)
	if _, err := p.nc.Write(big); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Log("write:", err) // the server may close before reading it all
	}
	cl := expect[*frame.ConnectionClose](p)
	if cl.ReplyCode != frame.FrameError {
		t.Fatalf("reply %d %q, want 501", cl.ReplyCode, cl.ReplyText)
	}
}

// Garbage after the handshake loses the connection with an error, never
// the server.
func TestGarbageAfterHandshake(t *testing.T) {
	dial := serve(t, Config{})
	p := dial()
	p.open("guest", "guest")
	if _, err := p.nc.Write(bytes.Repeat([]byte{0x42}, 64)); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := p.r.ReadFrame()
		if err != nil {
			break // closed: fine, as long as the server lives on
		}
		if f.Type == frame.TypeMethod {
			if m, _ := frame.DecodeMethod(f.Payload); m != nil {
				if cl, ok := m.(*frame.ConnectionClose); ok && cl.ReplyCode < 500 {
					t.Fatalf("garbage answered with a soft code %d", cl.ReplyCode)
				}
			}
		}
	}
	// Another client is served as before.
	q := dial()
	if q.open("guest", "guest") == nil {
		t.Fatal("the next client was refused")
	}
}

// Server shutdown sends connection.close 320 CONNECTION_FORCED.
func TestShutdownForcesClose(t *testing.T) {
	b := broker.New(broker.Options{})
	defer b.Close()
	h := NewHandler(Config{}, b, auth.NewDefaultUsers(), nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		h.ServeConn(ctx, nc)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	p := &peer{t: t, nc: nc, r: frame.NewReader(nc, frame.MinSize*64), w: frame.NewWriter(nc)}
	p.open("guest", "guest")
	cancel()
	cl := expect[*frame.ConnectionClose](p)
	if cl.ReplyCode != frame.ConnectionForced {
		t.Fatalf("reply %d %q, want 320", cl.ReplyCode, cl.ReplyText)
	}
	p.send(0, &frame.ConnectionCloseOk{})
	<-done
}
