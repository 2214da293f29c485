// Package test holds Herald's black-box end-to-end tests: each starts a
// real server on random loopback ports and drives it with real client
// libraries.
package test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
)

// testServer is a running Herald on random ports.
type testServer struct {
	*app.App
	URL string
}

type serverOption func(*app.Config)

func startServer(t testing.TB, opts ...serverOption) *testServer {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("HERALD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	cfg := app.Config{
		AMQPAddr: "127.0.0.1:0",
		DataDir:  t.TempDir(),
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
		AMQP:     amqp091.Config{Version: "test"},
		// bcrypt's least cost: passwords set through the management API
		// hash in a millisecond instead of 50 (600 under -race).
		BcryptCost: 4,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &testServer{App: srv, URL: fmt.Sprintf("amqp://guest:guest@%s/", srv.AMQPAddr())}
}

func (s *testServer) dial(t testing.TB) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(s.URL)
	if err != nil {
		t.Fatalf("dial %s: %v", s.URL, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func mustChannel(t testing.TB, c *amqp.Connection) *amqp.Channel {
	t.Helper()
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	return ch
}
