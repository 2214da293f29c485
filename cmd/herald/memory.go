package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/heraldmq/herald/internal/bench"
)

// runMemory implements `herald bench memory`: one load pattern against a
// running broker, its peak RSS against its memory watermark. Exit status
// 0 when the peak stays within 10% of the watermark, 1 when not or the run
// failed, 2 on bad flags.
func runMemory(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench memory", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := bench.DefaultMemoryConfig()
	cfg := def
	fs.StringVar(&cfg.Pattern, "pattern", def.Pattern, "load `pattern`: "+strings.Join(bench.MemoryPatterns, ", "))
	fs.StringVar(&cfg.AMQPURL, "url", def.AMQPURL, "AMQP `URL` of the broker")
	fs.StringVar(&cfg.MQTTAddr, "mqtt", def.MQTTAddr, "MQTT `host:port` of the broker")
	fs.StringVar(&cfg.HTTPURL, "http-url", def.HTTPURL, "HTTP `URL` of the broker (its /api/nodes gives the watermark; /ws for the stuck pattern)")
	fs.IntVar(&cfg.BrokerPID, "broker-pid", 0, "broker process `id`, whose RSS is sampled (required)")
	fs.DurationVar(&cfg.Duration, "duration", def.Duration, "how long the load runs")
	fs.IntVar(&cfg.Publishers, "publishers", def.Publishers, "flooding publishers of each protocol (AMQP and MQTT)")
	fs.IntVar(&cfg.Size, "size", def.Size, "message body `bytes`")
	fs.IntVar(&cfg.Stuck, "stuck", def.Stuck, "stuck: subscribers of each protocol (MQTT, /ws) that never read")
	fs.IntVar(&cfg.Connections, "connections", def.Connections, "conns: MQTT subscribers on the flooded topic")
	fs.Func("source-addrs", "local `addresses` the connections dial from in turn, e.g. 127.0.0.2-127.0.0.5", func(s string) error {
		addrs, err := bench.ParseSourceAddrs(s)
		cfg.SourceAddrs = addrs
		return err
	})
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: herald bench memory --pattern flood|slow|stuck|conns --broker-pid PID [flags]

Loads a running broker the ways that make memory grow and reports its peak
RSS against its memory alarm's watermark (read from /api/nodes): flood
(AMQP and MQTT publishers into a queue nobody reads), slow (the same with
consumers acking one message per 10 ms), stuck (subscribers that never read
their sockets), conns (--connections MQTT subscribers on the flooded topic).
Run the broker with a small watermark so that runs are short:
  herald serve --vm-memory-high-watermark-absolute 268435456

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
	if !slices.Contains(bench.MemoryPatterns, cfg.Pattern) {
		fmt.Fprintf(stderr, "herald bench memory: unknown --pattern %q (one of %s)\n", cfg.Pattern, strings.Join(bench.MemoryPatterns, ", "))
		return 2
	}
	if cfg.BrokerPID <= 0 {
		fmt.Fprintln(stderr, "herald bench memory: --broker-pid is required (the broker's RSS is sampled)")
		return 2
	}
	res, err := bench.RunMemory(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "herald bench memory: %v\n", err)
		return 1
	}
	if *jsonOut {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			return 1
		}
	} else if err := bench.WriteMemoryTable(stdout, res); err != nil {
		return 1
	}
	if !res.Within {
		return 1
	}
	return 0
}
