package stomp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
	"github.com/heraldmq/herald/internal/store"
)

// waitTimeout bounds every wait for something that should happen at once.
const waitTimeout = 5 * time.Second

type env struct {
	t        *testing.T
	b        *broker.Broker
	users    *auth.Users
	h        *Handler
	addr     string
	amqpAddr string
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// newEnv starts a broker with a STOMP and an AMQP listener on 127.0.0.1:0;
// cleanup shuts both down and waits for every connection goroutine.
func newEnv(t *testing.T, cfg Config) *env { return newEnvOn(t, cfg, nil) }

// newEnvOn is newEnv with a message log (nil: none).
func newEnvOn(t *testing.T, cfg Config, st *store.Log) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e := &env{t: t, b: broker.New(broker.Options{Logger: log, Store: st}), users: auth.NewDefaultUsers()}
	e.users.SetBcryptCost(4) // bcrypt at cost 10 takes ~0.6 s under -race
	e.users.Put("alice", "secret", false)
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.h = NewHandler(cfg, e.b, e.users, log)
	ah := amqp091.NewHandler(amqp091.Config{}, e.b, e.users, log)
	e.addr = e.listen(e.h.ServeConn)
	e.amqpAddr = e.listen(ah.ServeConn)
	t.Cleanup(func() {
		e.cancel()
		e.wg.Wait()
	})
	return e
}

func (e *env) listen(serve func(context.Context, net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		<-e.ctx.Done()
		ln.Close()
	}()
	go func() {
		defer e.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				serve(e.ctx, nc)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects the real go-stomp client as guest.
func (e *env) dial(opts ...func(*stomp.Conn) error) *stomp.Conn {
	e.t.Helper()
	opts = append([]func(*stomp.Conn) error{stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.Logger(quietLogger{}), stomp.ConnOpt.UnsubscribeReceiptTimeout(time.Second),
		// go-stomp v3.1.3's Disconnect can deadlock for its whole receipt
		// timeout with its own reader when the server has just ended the
		// connection with ERROR (Disconnect holds the lock the reader
		// needs to mark the connection closed); keep that wait short.
		stomp.ConnOpt.DisconnectReceiptTimeout(time.Second)}, opts...)
	c, err := stomp.Dial("tcp", e.addr, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Disconnect() })
	return c
}

func (e *env) amqpConn() *amqp.Connection {
	e.t.Helper()
	c, err := amqp.Dial("amqp://guest:guest@" + e.amqpAddr + "/")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

func (e *env) queue(name string) *broker.Queue {
	e.t.Helper()
	q, err := e.b.VHost("/").Queue(name)
	if err != nil {
		e.t.Fatal(err)
	}
	return q
}

// waitFor polls cond until it holds; for conditions with no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func recv(t *testing.T, sub *stomp.Subscription) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatal("subscription closed")
		}
		if m.Err != nil {
			t.Fatalf("subscription error: %v", m.Err)
		}
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no message")
	}
	return nil
}

type quietLogger struct{}

func (quietLogger) Debugf(string, ...interface{})   {}
func (quietLogger) Debug(string)                    {}
func (quietLogger) Infof(string, ...interface{})    {}
func (quietLogger) Info(string)                     {}
func (quietLogger) Warningf(string, ...interface{}) {}
func (quietLogger) Warning(string)                  {}
func (quietLogger) Errorf(string, ...interface{})   {}
func (quietLogger) Error(string)                    {}

// rawConn is a hand-driven TCP client for what a real client would never
// send (bad frames, missing heart-beats).
type rawConn struct {
	t  *testing.T
	nc net.Conn
	fr *frame.Reader
}

func (e *env) raw() *rawConn {
	e.t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(waitTimeout))
	fr := frame.NewReader(bufio.NewReader(nc), frame.Limits{})
	fr.SetVersion(frame.V12)
	return &rawConn{t: e.t, nc: nc, fr: fr}
}

func (r *rawConn) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.nc, s); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next frame, skipping heart-beats unless keepHB.
func (r *rawConn) read(keepHB bool) *frame.Frame {
	r.t.Helper()
	for {
		f, err := r.fr.Read()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if f != nil || keepHB {
			return f
		}
	}
}

func (r *rawConn) connect(extra string) *frame.Frame {
	r.t.Helper()
	r.write("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n" + extra + "\n\x00")
	f := r.read(false)
	if f.Command != frame.CONNECTED {
		r.t.Fatalf("got %v %q", f, f.Body)
	}
	return f
}

// expectClosed checks that the server closed the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	for {
		f, err := r.fr.Read()
		if err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF && !strings.Contains(err.Error(), "reset") {
				r.t.Fatalf("expected EOF, got %v", err)
			}
			return
		}
		if f != nil {
			r.t.Fatalf("expected close, got %v", f)
		}
	}
}

func brokerDurable() broker.QueueOptions { return broker.QueueOptions{Durable: true} }

// unsubscribe works around a race in go-stomp's Subscription.Unsubscribe
// (v3.1.3): it can miss the broadcast of a RECEIPT that arrives before its
// waiting goroutine starts, and then reports a timeout although the server
// answered. A receipted SEND afterwards proves the server handled the
// UNSUBSCRIBE (it handles frames in order).
func unsubscribe(t *testing.T, sub *stomp.Subscription, c *stomp.Conn, opts ...func(*stompframe.Frame) error) {
	t.Helper()
	if err := sub.Unsubscribe(opts...); err != nil && !errors.Is(err, &stomp.ErrUnsubscribeReceiptTimeout) {
		t.Fatal(err)
	}
	if err := c.Send("/queue/unsubscribe-barrier", "", nil, stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
}
