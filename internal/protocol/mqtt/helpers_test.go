package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/auth"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/store"
)

// testEnv is a broker with an MQTT and an AMQP listener on 127.0.0.1:0.
type testEnv struct {
	t        *testing.T
	b        *broker.Broker
	h        *Handler
	addr     string
	amqpAddr string
	cancel   context.CancelFunc
}

func serve(t *testing.T, ctx context.Context, wg *sync.WaitGroup, lns *[]net.Listener, serveConn func(context.Context, net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
				serveConn(ctx, nc)
			}()
		}
	}()
	*lns = append(*lns, ln)
	return ln.Addr().String()
}

func startEnv(t *testing.T, cfg Config) *testEnv { return startEnvOn(t, cfg, nil) }

// conn is the handler's connection of clientID in the default vhost, or nil.
func (e *testEnv) conn(clientID string) *conn {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	return e.h.conns[broker.DefaultVHost+"\x00"+clientID]
}

// startEnvOn is startEnv with a message log (nil: none).
func startEnvOn(t *testing.T, cfg Config, st *store.Log) *testEnv {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	b := broker.New(broker.Options{Logger: log, Store: st})
	users := auth.NewDefaultUsers()
	h := NewHandler(cfg, b, users, log)
	ah := amqp091.NewHandler(amqp091.Config{}, b, users, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	e := &testEnv{t: t, b: b, h: h, cancel: cancel}
	var lns []net.Listener
	e.addr = serve(t, ctx, &wg, &lns, h.ServeConn)
	e.amqpAddr = serve(t, ctx, &wg, &lns, ah.ServeConn)
	// Stop accepting, close the connections, then wait for every goroutine
	// we started.
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		cancel()
		wg.Wait()
		h.Close()
	})
	return e
}

// v3 connects a paho.mqtt.golang (MQTT 3.1.1) client.
func (e *testEnv) v3(id string, clean bool, configure ...func(*pahov3.ClientOptions)) pahov3.Client {
	e.t.Helper()
	o := pahov3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(id).
		SetUsername("guest").SetPassword("guest").SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4)
	for _, f := range configure {
		f(o)
	}
	c := pahov3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("v3 connect %s: %v", id, tok.Error())
	}
	e.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func wait(t *testing.T, tok pahov3.Token) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("token timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatal(err)
	}
}

// v5client is a paho.golang client with its received messages.
type v5client struct {
	*paho.Client
	nc   net.Conn
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

func (e *testEnv) v5dial(addr string) net.Conn {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	return nc
}

// v5 connects a paho.golang (MQTT 5) client; cp defaults are filled in.
func (e *testEnv) v5(cp *paho.Connect) (*v5client, *paho.Connack) {
	e.t.Helper()
	return e.v5on(e.v5dial(e.addr), cp)
}

func (e *testEnv) v5on(nc net.Conn, cp *paho.Connect) (*v5client, *paho.Connack) {
	e.t.Helper()
	vc := &v5client{nc: nc, msgs: make(chan *paho.Publish, 1000), disc: make(chan *paho.Disconnect, 1)}
	vc.Client = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			vc.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { vc.disc <- d },
	})
	if cp.Username == "" {
		cp.Username, cp.UsernameFlag, cp.Password, cp.PasswordFlag = "guest", true, []byte("guest"), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := vc.Connect(ctx, cp)
	e.t.Cleanup(func() {
		vc.Disconnect(&paho.Disconnect{})
		nc.Close()
		<-vc.Done()
	})
	if err != nil {
		if ca != nil {
			return vc, ca
		}
		e.t.Fatalf("v5 connect: %v", err)
	}
	return vc, ca
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (v *v5client) sub(t *testing.T, opts ...paho.SubscribeOptions) *paho.Suback {
	t.Helper()
	sa, err := v.Subscribe(ctx5(t), &paho.Subscribe{Subscriptions: opts})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	return sa
}

func (v *v5client) pub(t *testing.T, p *paho.Publish) {
	t.Helper()
	if _, err := v.Publish(ctx5(t), p); err != nil {
		t.Fatal(err)
	}
}

// next waits for the next message.
func (v *v5client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-v.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

// none checks that nothing arrives: a round trip through a probe topic
// proves the server has already handled everything sent before it.
func (v *v5client) none(t *testing.T, probe string) {
	t.Helper()
	v.sub(t, paho.SubscribeOptions{Topic: probe})
	v.pub(t, &paho.Publish{Topic: probe, Payload: []byte("probe")})
	m := v.next(t)
	if m.Topic != probe {
		t.Fatalf("unexpected message on %q: %q", m.Topic, m.Payload)
	}
}

func (e *testEnv) amqp() *amqp.Channel {
	e.t.Helper()
	conn, err := amqp.Dial(fmt.Sprintf("amqp://guest:guest@%s/", e.amqpAddr))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		e.t.Fatal(err)
	}
	return ch
}

// waitFor polls cond (a state change with no event to wait on).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
