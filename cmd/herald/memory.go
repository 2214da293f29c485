package main

import (
	"context"
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
	def := bench.DefaultMemoryConfig()
	cfg := def
	return reportCommand[bench.MemoryResult]{
		name: "bench memory",
		usage: `Usage: herald bench memory --pattern flood|slow|stuck|conns --broker-pid PID [flags]

Loads a running broker the ways that make memory grow and reports its peak
RSS against its memory alarm's watermark (read from /api/nodes): flood
(AMQP and MQTT publishers into a queue nobody reads), slow (the same with
consumers acking one message per 10 ms), stuck (subscribers that never read
their sockets), conns (--connections MQTT subscribers on the flooded topic).
Run the broker with a small watermark so that runs are short:
  herald serve --vm-memory-high-watermark-absolute 268435456

Flags:
`,
		flags: func(fs *flag.FlagSet) {
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
			sourceAddrsFlag(fs, &cfg.SourceAddrs, "local `addresses` the connections dial from in turn, e.g. 127.0.0.2-127.0.0.5")
		},
		validate: func() error {
			if !slices.Contains(bench.MemoryPatterns, cfg.Pattern) {
				return fmt.Errorf("unknown --pattern %q (one of %s)", cfg.Pattern, strings.Join(bench.MemoryPatterns, ", "))
			}
			if cfg.BrokerPID <= 0 {
				return errors.New("--broker-pid is required (the broker's RSS is sampled)")
			}
			return nil
		},
		run: func(ctx context.Context, progress io.Writer) (bench.MemoryResult, error) {
			return bench.RunMemory(ctx, cfg, progress)
		},
		report: bench.WriteMemoryTable,
		verdict: func(res bench.MemoryResult) string {
			if !res.Within {
				return "peak RSS above the watermark by more than 10%"
			}
			return ""
		},
	}.main(ctx, args, stdout, stderr)
}
