package main

import (
	"context"
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
	def := bench.DefaultSoakConfig()
	cfg := def
	return reportCommand[*bench.SoakResult]{
		name: "bench soak",
		usage: `Usage: herald bench soak [flags]

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
`,
		flags: func(fs *flag.FlagSet) {
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
		},
		run: func(ctx context.Context, progress io.Writer) (*bench.SoakResult, error) {
			return bench.RunSoak(ctx, cfg, progress)
		},
		report: bench.WriteSoakReport,
		verdict: func(res *bench.SoakResult) string {
			if res.Failed() {
				return fmt.Sprintf("%d confirmed messages lost, %d duplicated", res.Lost, res.Duplicates)
			}
			return ""
		},
	}.main(ctx, args, stdout, stderr)
}
