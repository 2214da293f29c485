package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/heraldmq/herald/internal/bench"
)

// runSoak implements `herald bench soak`: every protocol's clients against
// a running broker for --duration, then the account. Exit status: 0 all
// confirmed messages arrived once, 1 some were lost or duplicated (or the
// soak could not run), 2 bad flags.
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := bench.DefaultSoakConfig()
	cfg := def
	fs.StringVar(&cfg.AMQPURL, "amqp", def.AMQPURL, "AMQP `URL` of the broker")
	fs.StringVar(&cfg.MQTTURL, "mqtt", def.MQTTURL, "MQTT `URL` of the broker")
	fs.StringVar(&cfg.STOMPURL, "stomp", def.STOMPURL, "STOMP `URL` of the broker")
	fs.StringVar(&cfg.HTTPURL, "http", def.HTTPURL, "HTTP `URL` of the broker: /ws and the management API (/api/nodes)")
	fs.DurationVar(&cfg.Duration, "duration", def.Duration, "how long the clients run")
	fs.DurationVar(&cfg.Interval, "interval", def.Interval, "how often the broker's RSS, goroutines and open files are sampled")
	fs.DurationVar(&cfg.Drain, "drain", def.Drain, "after publishing stops, wait at most this long for the confirmed messages still on their way")
	fs.IntVar(&cfg.Rate, "rate", def.Rate, "messages a second of each main publisher (the others run at fractions of it)")
	fs.IntVar(&cfg.Size, "size", def.Size, "message body size in `bytes`")
	fs.IntVar(&cfg.BrokerPID, "broker-pid", 0, "broker process `id`: RSS and open files from /proc (otherwise from /api/nodes)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the reconnecting clients' random moments (0 = random)")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object instead of the table")
	quiet := fs.Bool("quiet", false, "do not print progress lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: herald bench soak [flags]

Runs AMQP, MQTT, STOMP and WebSocket clients together against a running
Herald: publishers with confirms (AMQP, MQTT QoS 1, STOMP receipts) into a
durable queue with competing consumers (one of which drops its connection
every few seconds with deliveries unacked), a fan-out to one subscriber per
protocol, request/reply over direct reply-to, clients of every protocol
connecting and leaving, and a slow consumer on a bounded queue. At the end:
confirmed messages lost (must be 0), duplicates without the redelivered flag
(must be 0), the broker's RSS and goroutines sampled every --interval with a
verdict whether they level off, and its open files against the start.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald bench soak: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	res, err := bench.RunSoak(ctx, cfg, progress)
	if err != nil {
		fmt.Fprintf(stderr, "herald bench soak: %v\n", err)
		return 1
	}
	if *jsonOut {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			fmt.Fprintf(stderr, "herald bench soak: %v\n", err)
			return 1
		}
	} else if err := bench.WriteSoakReport(stdout, res); err != nil {
		fmt.Fprintf(stderr, "herald bench soak: %v\n", err)
		return 1
	}
	if res.Failed() {
		fmt.Fprintf(stderr, "herald bench soak: %d confirmed messages lost, %d duplicated\n", res.Lost, res.Duplicates)
		return 1
	}
	return 0
}
