// Command service serves the greeter example service until interrupted,
// then drains (finishes the calls it has taken) and exits.
//
//	go run ./examples/rpc/service -url amqp://guest:guest@localhost:5672/
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldmq/herald/examples/rpc/greeter"
	"github.com/heraldmq/herald/pkg/rpc"
)

func main() {
	url := flag.String("url", envOr("HERALD_URL", "amqp://guest:guest@localhost:5672/"), "broker AMQP URL")
	concurrency := flag.Int("concurrency", 16, "calls this instance runs at once (its prefetch)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))

	srv := rpc.NewServer(rpc.ServerConfig{ConnConfig: rpc.ConnConfig{URL: *url, Logger: log}, Concurrency: *concurrency})
	if err := srv.Register(greeter.Service{}, rpc.Service{Name: greeter.Name, Version: "1.0.0",
		Description: "says hello and adds numbers", Metadata: map[string]string{"language": "go"}}); err != nil {
		log.Error("register", "err", err)
		os.Exit(1)
	}
	if err := srv.Start(); err != nil {
		log.Error("start", "err", err)
		os.Exit(1)
	}
	log.Info("serving", "service", greeter.Name)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	drain, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		log.Error("shutdown", "err", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
