package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/heraldmq/herald/internal/bench"
)

// runBench implements `herald bench`. args excludes the word "bench". Returns
// the process exit code: 0 on success, 1 if messages were lost or the run
// failed, 2 on bad flags.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "soak" {
		return runSoak(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "memory" {
		return runMemory(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "crash-loop" {
		return runCrashLoop(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := bench.DefaultConfig()
	cfg := def
	fs.StringVar(&cfg.URL, "url", def.URL, "broker `URL`: amqp://user:password@host:port/vhost, or mqtt://user:password@host:port for the mqtt-* scenarios (which default to "+bench.DefaultMQTTURL+")")
	fs.StringVar(&cfg.Scenario, "scenario", def.Scenario, "`name` of the scenario (listed below; also accepted as the only argument)")
	fs.DurationVar(&cfg.Duration, "duration", def.Duration, "length of the measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", def.Warmup, "warmup before the window, reported separately and excluded from the figures (0 = none)")
	fs.DurationVar(&cfg.Drain, "drain", def.Drain, "after stopping the producers, wait at most this long for in-flight messages")
	fs.IntVar(&cfg.Producers, "producers", def.Producers, "producer connections (throughput, fanout, latency)")
	fs.IntVar(&cfg.Consumers, "consumers", def.Consumers, "consumer connections (throughput, latency); rpc: server connections; fanout: always one per queue")
	fs.IntVar(&cfg.Queues, "queues", 0, "queues: fanout binds this many (default 10); throughput/latency spread producers and consumers round-robin (default 1)")
	fs.IntVar(&cfg.Size, "size", def.Size, fmt.Sprintf("message body size in `bytes` (at least %d, the header)", bench.HeaderSize))
	fs.IntVar(&cfg.Prefetch, "prefetch", def.Prefetch, "basic.qos prefetch count per consumer (0 = unlimited; ignored with --auto-ack)")
	fs.IntVar(&cfg.AckEvery, "ack-every", def.AckEvery, "ack every `N` deliveries with multiple=true (1 = ack each with multiple=false)")
	fs.IntVar(&cfg.Rate, "rate", 0, "total publish rate in msgs/s (rpc: requests/s); 0 = as fast as possible (latency default 1000)")
	fs.BoolVar(&cfg.Confirm, "confirm", def.Confirm, "use publisher confirms; lost is then counted against confirmed publishes")
	fs.IntVar(&cfg.ConfirmWindow, "confirm-window", def.ConfirmWindow, "unconfirmed publishes allowed in flight per producer")
	fs.BoolVar(&cfg.Persistent, "persistent", def.Persistent, "publish persistent messages (delivery-mode 2) to durable (still auto-deleted) queues")
	fs.BoolVar(&cfg.AutoAck, "auto-ack", def.AutoAck, "consume with no-ack instead of manual acks")
	fs.StringVar(&cfg.QueueType, "queue-type", "", "x-queue-type of the throughput, latency and fanout queues: classic (default) or quorum (durable, not auto-delete; deleted at the end)")
	fs.IntVar(&cfg.Callers, "callers", def.Callers, "rpc: concurrent callers, each with its own connection")
	fs.BoolVar(&cfg.DirectReplyTo, "direct-reply-to", def.DirectReplyTo, "rpc: callers consume amq.rabbitmq.reply-to instead of declaring a reply queue")
	fs.DurationVar(&cfg.RPCTimeout, "rpc-timeout", def.RPCTimeout, "rpc: give up waiting for a reply after this long")
	fs.IntVar(&cfg.Messages, "messages", 0, fmt.Sprintf("stream-replay: messages to publish and then replay from first (default %d)", bench.DefaultReplayMessages))
	fs.StringVar(&cfg.HTTPURL, "http-url", "", "rpc-gateway: the HTTP API `URL`, http://user:password@host:port (default "+bench.DefaultHTTPURL+")")
	fs.IntVar(&cfg.BrokerPID, "broker-pid", 0, "broker process `id`: report its CPU time during the window and messages per broker CPU-second; mqtt-idle, ws-idle: also its RSS per connection (Linux)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 0, fmt.Sprintf("mqtt-fanout: subscriber connections (default %d)", bench.DefaultSubscribers))
	fs.BoolVar(&cfg.PahoSubscribers, "paho-subscribers", false, "mqtt-fanout: subscribers use the paho client library instead of the bench's lean client (which costs the machine a fraction of the CPU per delivery)")
	fs.BoolVar(&cfg.LibrarySubscribers, "library-subscribers", false, "ws-fanout: subscribers use the coder/websocket client library instead of the bench's lean reader (which costs the machine a fraction of the CPU per delivery)")
	fs.IntVar(&cfg.QoS, "qos", 0, "mqtt-fanout: QoS `level` 0 or 1 of the publishes and subscriptions (QoS 1: up to --confirm-window publishes await their PUBACK)")
	fs.IntVar(&cfg.Connections, "connections", 0, fmt.Sprintf("mqtt-idle, ws-idle: idle connections to open and hold for --duration (default %d)", bench.DefaultConnections))
	sourceAddrsFlag(fs, &cfg.SourceAddrs, "mqtt-fanout, mqtt-idle, ws-fanout, ws-idle: local `addresses` the connections dial from in turn, e.g. 127.0.0.2-127.0.0.5 (each has its own ephemeral ports)")
	jsonOut := fs.Bool("json", false, "print the result as one JSON object instead of the table")
	quiet := fs.Bool("quiet", false, "do not print progress lines")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process (its clients, e.g. pkg/rpc in rpc-sdk) to this `file`, for go tool pprof")
	fs.Usage = func() { benchUsage(fs) }

	// The scenario may also be given as the first argument:
	// `herald bench fanout --queues 3`.
	positional := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald bench: unexpected argument %q (flags go after the scenario: herald bench [scenario] [flags]; see herald bench -h)\n", fs.Arg(0))
		return 2
	}
	if positional != "" {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "scenario" })
		if set && !strings.EqualFold(cfg.Scenario, positional) {
			fmt.Fprintf(stderr, "herald bench: scenario given twice: %q and --scenario %q\n", positional, cfg.Scenario)
			return 2
		}
		cfg.Scenario = positional
	}
	if _, err := cfg.Normalize(); err != nil {
		fmt.Fprintf(stderr, "herald bench: %v\n", err)
		return 2
	}

	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "herald bench: %v\n", err)
			return 2
		}
		defer stop()
	}
	res, err := bench.Run(ctx, cfg, progress)
	if err != nil {
		fmt.Fprintf(stderr, "herald bench: %v\n", err)
		return 1
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "herald bench: %v\n", err)
			return 1
		}
	} else if err := bench.WriteTable(stdout, res); err != nil {
		fmt.Fprintf(stderr, "herald bench: %v\n", err)
		return 1
	}
	// MQTT allows a broker to drop QoS 0 messages: reported, not a failure.
	qos0Dropped := res.Lost > 0 && res.Scenario == bench.ScenarioMQTTFanout && res.Config.QoS == 0
	if qos0Dropped {
		fmt.Fprintf(stderr, "herald bench: %s of %s expected QoS 0 deliveries were dropped\n", bench.FormatCount(res.Lost), bench.FormatCount(res.Expected))
	}
	switch {
	case res.Lost > 0 && !qos0Dropped:
		fmt.Fprintf(stderr, "herald bench: %s of %s expected messages were lost\n", bench.FormatCount(res.Lost), bench.FormatCount(res.Expected))
		return 1
	case res.Idle != nil && res.Idle.Connected < res.Idle.Requested:
		fmt.Fprintf(stderr, "herald bench: only %s of %s connections were made\n", bench.FormatCount(uint64(res.Idle.Connected)), bench.FormatCount(uint64(res.Idle.Requested)))
		return 1
	case res.Idle != nil && res.Idle.StillConnected < res.Idle.Connected:
		fmt.Fprintf(stderr, "herald bench: %s idle connections were dropped\n", bench.FormatCount(uint64(res.Idle.Connected-res.Idle.StillConnected)))
		return 1
	case res.Interrupted:
		fmt.Fprintln(stderr, "herald bench: interrupted; the results cover only part of the window")
		return 1
	}
	return 0
}

func benchUsage(fs *flag.FlagSet) {
	w := fs.Output()
	var b strings.Builder
	b.WriteString(`Usage: herald bench [scenario] [flags]

Load-tests any AMQP 0-9-1 broker (Herald or RabbitMQ: same flags, comparable
figures), or, with the mqtt-* scenarios, any MQTT 3.1.1 broker (Herald or
mosquitto). Each run declares its own auto-delete queues named herald-bench-*,
and deletes them at the end. Progress goes to stderr once a second; the
result table (or --json) goes to stdout. Exit status: 0 ok, 1 messages lost or
the run failed, 2 bad flags.

Scenarios:
`)
	defer func() {
		fmt.Fprint(w, "\nAlso: herald bench soak (every protocol at once for hours) and herald bench crash-loop (kill -9 N times), herald bench memory (peak RSS vs the memory watermark); -h on each\n")
	}()
	for _, s := range bench.Scenarios {
		fmt.Fprintf(&b, "  %-14s %s\n", s.Name, s.Summary)
	}
	b.WriteString(`
Every message carries producer id, sequence number and send time; consumers
report lost, duplicated (and redelivered) and out-of-order messages. Latency is
receive time minus the send time written in the body; paced runs (--rate)
also report it from the scheduled send time. Rates and latency cover the
measured window only; loss accounting covers the whole run.

Examples:
  herald bench                                   # throughput, 1 -> 1, 10s
  herald bench --producers 4 --consumers 4 --confirm
  herald bench --scenario fanout --queues 10 --size 1024
  herald bench --scenario rpc --callers 16 --direct-reply-to
  herald bench --scenario latency --rate 5000 --duration 30s
  herald bench --url amqp://guest:guest@rabbit:5672/ --broker-pid $(pgrep beam.smp) --json
  herald bench --broker-pid $(pgrep -f 'herald serve')   # msgs per broker CPU-second
  herald bench mqtt-fanout --url mqtt://127.0.0.1:1883 --subscribers 100 --qos 1
  herald bench rpc-sdk --callers 16                       # pkg/rpc against Herald
  herald bench nats-rpc --url nats://127.0.0.1:4222       # the same over NATS request/reply
  herald bench stream-replay --messages 1000000 --consumers 10 --url nats://127.0.0.1:4222   # JetStream
  herald bench mqtt-fanout --subscribers 15000 --rate 1 --source-addrs 127.0.0.2-127.0.0.5 --broker-pid $(pgrep -f 'herald serve')
  herald bench mqtt-idle --url mqtt://127.0.0.1:1883 --connections 10000 --broker-pid $(pgrep mosquitto)
  herald bench ws-idle --url ws://guest:guest@127.0.0.1:15672/ws --connections 5000 --broker-pid $(pgrep -f 'herald serve')   # or /mqtt, or Centrifugo's /connection/websocket

Flags:
`)
	fmt.Fprint(w, b.String())
	fs.PrintDefaults()
}

// sourceAddrsFlag defines --source-addrs (bench.ParseSourceAddrs) into dst.
func sourceAddrsFlag(fs *flag.FlagSet, dst *[]string, usage string) {
	fs.Func("source-addrs", usage, func(s string) error {
		addrs, err := bench.ParseSourceAddrs(s)
		*dst = addrs
		return err
	})
}
