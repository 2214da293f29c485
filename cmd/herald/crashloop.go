package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/heraldmq/herald/internal/bench"
)

// runCrashLoop implements `herald bench crash-loop`. Exit status: 0 every
// confirmed message arrived (repeats only flagged redelivered), 1 a loss,
// an unflagged duplicate or a run that could not complete, 2 bad flags.
func runCrashLoop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	def := bench.DefaultCrashLoopConfig()
	cfg := def
	return reportCommand[*bench.CrashLoopResult]{
		name: "bench crash-loop",
		usage: `Usage: herald bench crash-loop [flags]

Starts a herald binary on a data directory (AMQP and MQTT on free loopback
ports), publishes with confirms to a durable classic queue and a stream
(when the build accepts x-queue-type stream; otherwise skipped, and said so)
and at MQTT QoS 1 to a subscriber's persistent session, consumes meanwhile,
kills the broker with SIGKILL at a random moment, restarts it, --cycles
times. Then it starts it once more, drains, and accounts every confirmed
message: lost (must be 0), received again without the redelivered flag
(must be 0).

Flags:
`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.Herald, "herald", "", "herald `binary` to start and kill (default: this one)")
			fs.StringVar(&cfg.DataDir, "data-dir", "", "data directory the runs share (default: a temporary one, removed at the end)")
			fs.IntVar(&cfg.Cycles, "cycles", def.Cycles, "start / drive / kill -9 cycles")
			fs.DurationVar(&cfg.MinUp, "min-up", def.MinUp, "earliest kill in a cycle, from the clients' start")
			fs.DurationVar(&cfg.MaxUp, "max-up", def.MaxUp, "latest kill in a cycle")
			fs.IntVar(&cfg.Rate, "rate", def.Rate, "messages a second of each publisher")
			fs.DurationVar(&cfg.Drain, "drain", def.Drain, "after the last cycle, wait at most this long for every confirmed message")
			fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the kill moments (0 = random; the report prints it)")
		},
		run: func(ctx context.Context, progress io.Writer) (*bench.CrashLoopResult, error) {
			return bench.RunCrashLoop(ctx, cfg, progress)
		},
		report: bench.WriteCrashLoopReport,
		verdict: func(res *bench.CrashLoopResult) string {
			switch {
			case res.Failed():
				return fmt.Sprintf("%d confirmed messages lost, %d duplicated", res.Lost, res.Duplicates)
			case res.Undrained:
				return "the final drain did not finish"
			case res.Cycles < cfg.Cycles:
				return fmt.Sprintf("interrupted after %d of %d cycles", res.Cycles, cfg.Cycles)
			}
			return ""
		},
	}.main(ctx, args, stdout, stderr)
}
