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

// runCrashLoop implements `herald bench crash-loop`. Exit status: 0 every
// confirmed message arrived (repeats only flagged redelivered), 1 a loss,
// an unflagged duplicate or a run that could not complete, 2 bad flags.
func runCrashLoop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench crash-loop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := bench.DefaultCrashLoopConfig()
	cfg := def
	fs.StringVar(&cfg.Herald, "herald", "", "herald `binary` to start and kill (default: this one)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "data directory the runs share (default: a temporary one, removed at the end)")
	fs.IntVar(&cfg.Cycles, "cycles", def.Cycles, "start / drive / kill -9 cycles")
	fs.DurationVar(&cfg.MinUp, "min-up", def.MinUp, "earliest kill in a cycle, from the clients' start")
	fs.DurationVar(&cfg.MaxUp, "max-up", def.MaxUp, "latest kill in a cycle")
	fs.IntVar(&cfg.Rate, "rate", def.Rate, "messages a second of each publisher")
	fs.DurationVar(&cfg.Drain, "drain", def.Drain, "after the last cycle, wait at most this long for every confirmed message")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the kill moments (0 = random; the report prints it)")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object instead of the table")
	quiet := fs.Bool("quiet", false, "do not print a line per cycle")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: herald bench crash-loop [flags]

Starts a herald binary on a data directory (AMQP and MQTT on free loopback
ports), publishes with confirms to a durable classic queue and a stream
(when the build accepts x-queue-type stream; otherwise skipped, and said so)
and at MQTT QoS 1 to a subscriber's persistent session, consumes meanwhile,
kills the broker with SIGKILL at a random moment, restarts it, --cycles
times. Then it starts it once more, drains, and accounts every confirmed
message: lost (must be 0), received again without the redelivered flag
(must be 0).

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
		fmt.Fprintf(stderr, "herald bench crash-loop: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	res, err := bench.RunCrashLoop(ctx, cfg, progress)
	if err != nil {
		fmt.Fprintf(stderr, "herald bench crash-loop: %v\n", err)
		return 1
	}
	if *jsonOut {
		if err := json.NewEncoder(stdout).Encode(res); err != nil {
			fmt.Fprintf(stderr, "herald bench crash-loop: %v\n", err)
			return 1
		}
	} else if err := bench.WriteCrashLoopReport(stdout, res); err != nil {
		fmt.Fprintf(stderr, "herald bench crash-loop: %v\n", err)
		return 1
	}
	switch {
	case res.Failed():
		fmt.Fprintf(stderr, "herald bench crash-loop: %d confirmed messages lost, %d duplicated\n", res.Lost, res.Duplicates)
		return 1
	case res.Undrained:
		fmt.Fprintln(stderr, "herald bench crash-loop: the final drain did not finish")
		return 1
	case res.Cycles < cfg.Cycles:
		fmt.Fprintf(stderr, "herald bench crash-loop: interrupted after %d of %d cycles\n", res.Cycles, cfg.Cycles)
		return 1
	}
	return 0
}
