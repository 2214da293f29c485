// Command herald is the Herald message broker: AMQP 0-9-1 (RabbitMQ
// compatible), MQTT, STOMP and HTTP/WebSocket/SSE on one core.
//
//	herald serve [flags]     run the broker
//	herald ctl COMMAND ...   manage a running broker over its HTTP API
//	herald bench [flags]     measure a broker (Herald or RabbitMQ) over AMQP
//	herald store dump DIR    list the records of a message log
//	herald version           print the version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], stdout, stderr)
	case "ctl":
		return runCtl(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "store":
		return runStore(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "herald %s\n", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "herald: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Herald: one binary message broker (AMQP 0-9-1, MQTT, STOMP, HTTP/WebSocket).

Usage:
  herald serve [flags]   run the broker (herald serve -h for flags)
  herald ctl COMMAND     manage a running broker (herald ctl -h for commands)
  herald bench [flags]   load-test an AMQP broker (herald bench -h)
  herald store dump DIR  list the records of a message log
  herald version         print the version
`)
}
