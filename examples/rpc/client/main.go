// Command client calls the greeter example service (Go or Node) once per
// method and prints the replies.
//
//	go run ./examples/rpc/client -url amqp://guest:guest@localhost:5672/ -name Ada
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/heraldmq/herald/examples/rpc/greeter"
	"github.com/heraldmq/herald/pkg/rpc"
)

func main() {
	url := flag.String("url", envOr("HERALD_URL", "amqp://guest:guest@localhost:5672/"), "broker AMQP URL")
	name := flag.String("name", "world", "who to greet")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	flag.Parse()

	c, err := rpc.NewClient(rpc.ClientConfig{
		ConnConfig: rpc.ConnConfig{URL: *url, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))},
		Timeout:    *timeout,
		// Greet is idempotent: retried while no instance is up yet.
		Retry:   &rpc.RetryPolicy{MaxAttempts: 5},
		Breaker: &rpc.BreakerConfig{},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer c.Close()
	if err := run(context.Background(), c, *name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, rpc.ErrNoResponders) {
			fmt.Fprintln(os.Stderr, "(is a greeter service running? go run ./examples/rpc/service)")
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, c *rpc.Client, name string) error {
	// A typed stub.
	greet := rpc.NewMethod[greeter.GreetRequest, greeter.GreetReply](c, greeter.Name+".Greet", rpc.Idempotent())
	g, err := greet.Call(ctx, &greeter.GreetRequest{Name: name})
	if err != nil {
		return fmt.Errorf("greet: %w", err)
	}
	fmt.Printf("%s (answered by %s)\n", g.Greeting, g.By)

	// The untyped call.
	var sum greeter.AddReply
	if err := c.Call(ctx, greeter.Name+".Add", &greeter.AddRequest{A: 40, B: 2}, &sum); err != nil {
		return fmt.Errorf("add: %w", err)
	}
	fmt.Printf("40 + 2 = %d\n", sum.Sum)

	// A status other than OK comes back as an *rpc.Error.
	_, err = greet.Call(ctx, &greeter.GreetRequest{})
	var e *rpc.Error
	if errors.As(err, &e) {
		fmt.Printf("empty name: %s (%s)\n", e.Code, e.Message)
	}
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
