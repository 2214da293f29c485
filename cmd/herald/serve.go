package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/app"
	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091"
	"github.com/heraldmq/herald/internal/protocol/mqtt"
	"github.com/heraldmq/herald/internal/web"
)

// runServe implements `herald serve`. Every flag can also be set with an
// environment variable HERALD_<FLAG> (dashes become underscores); flags win.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "./data", "directory for durable state")
	loadDefs := fs.String("load-definitions", "", "RabbitMQ definitions JSON file imported at start, after the saved definitions (RabbitMQ's load_definitions)")
	amqpAddr := fs.String("amqp", ":5672", "AMQP 0-9-1 listen address HOST:PORT; port 0 picks a free port; \"off\" disables")
	mqttAddr := fs.String("mqtt", ":1883", "MQTT 3.1.1/5 listen address; \"off\" disables (MQTT over WebSocket is at /mqtt on --http)")
	stompAddr := fs.String("stomp", ":61613", "STOMP 1.0-1.2 listen address; \"off\" disables (STOMP over WebSocket is at /stomp on --http)")
	amqpsAddr := fs.String("amqps", "off", "AMQP over TLS listen address (usually :5671); needs --tls-cert and --tls-key")
	mqttsAddr := fs.String("mqtts", "off", "MQTT over TLS listen address (usually :8883)")
	stompsAddr := fs.String("stomps", "off", "STOMP over TLS listen address (usually :61614)")
	httpsAddr := fs.String("https", "off", "HTTPS listen address (usually :15671)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate (chain) for the TLS listeners")
	tlsKey := fs.String("tls-key", "", "PEM private key for the TLS listeners")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA bundle: when set, TLS clients must present a certificate it signed")
	httpAddr := fs.String("http", ":15672", "HTTP listen address (REST, WebSocket, SSE, management API); \"off\" disables")
	corsOrigins := fs.String("cors-origins", "", "comma-separated origins whose browsers may call the HTTP API (\"*\" = any)")
	wsOrigins := fs.String("websocket-origins", "", "comma-separated origins whose pages may open /mqtt and /stomp; empty = any origin, as RabbitMQ's Web MQTT/STOMP (their clients log in with CONNECT)")
	maxPresence := fs.Int("max-presence", web.DefaultMaxPresence, "clients in one channel's presence set; a /ws subscribe with presence beyond it is refused")
	wsHeartbeat := fs.Duration("ws-heartbeat", web.DefaultWSHeartbeat, "a /ws peer that does not answer pings for this long is closed (and leaves its presence sets)")
	jwtSecretFile := fs.String("jwt-hs256-secret-file", "", "file holding the HS256 secret that verifies JWTs: HTTP bearer tokens, and passwords on every protocol")
	jwtPublicKey := fs.String("jwt-rs256-public-key", "", "PEM public key that verifies RS256 JWTs (HTTP bearer tokens, passwords on every protocol)")
	jwtAudience := fs.String("jwt-audience", "", "bearer tokens must name this audience (aud) when set")
	jwtIssuer := fs.String("jwt-issuer", "", "bearer tokens must come from this issuer (iss) when set")
	heartbeat := fs.Duration("heartbeat", amqp091.DefaultHeartbeat, "AMQP heartbeat interval proposed to clients (0 disables)")
	channelMax := fs.Uint("channel-max", amqp091.DefaultChannelMax, "highest AMQP channel number a connection may open (the connection.tune channel_max)")
	maxConns := fs.Int("max-connections", 0, "client connections of all protocols together, checked at login (0 = unlimited); per vhost and per user limits are set with the management API")
	mqttReceiveMax := &boundedUint{v: mqtt.DefaultReceiveMaximum, lo: 1, hi: 65535}
	fs.Var(mqttReceiveMax, "mqtt-receive-maximum", "MQTT 5 Receive Maximum, sent in CONNACK: the `number` of QoS 1/2 publishes a client may have unacknowledged (no PUBACK or PUBCOMP yet), 1 to 65535; one more is answered with DISCONNECT 0x93")
	mqttAnonymous := fs.Bool("mqtt-allow-anonymous", true, "an MQTT CONNECT without a user name logs in as --default-user (no password; a loopback user only from localhost), as RabbitMQ's mqtt.allow_anonymous; false refuses it")
	maxPubRate := fs.Int("max-publish-rate", 0, "messages a second each AMQP, MQTT, STOMP or WebSocket connection may publish (beyond it Herald stops reading from the client), and each user over the HTTP publish endpoints (beyond it 429 Too Many Requests); 0 = unlimited")
	statsInterval := fs.Duration("stats-interval", web.DefaultStatsInterval, "how often the management API's message rates (message_stats.*_details.rate) are sampled; RabbitMQ's collect_statistics_interval")
	maxMessage := fs.Uint64("max-message-size", amqp091.DefaultMaxMessageSize, "largest message body accepted, in bytes")
	queueMemory := fs.Int("queue-memory-messages", broker.DefaultMemoryMessages, "persistent messages a durable queue keeps in RAM; the rest wait in the log and are read back as they near the head")
	consumerTimeout := fs.Duration("consumer-timeout", 0, "default consumer timeout: an unacknowledged delivery older than this returns to its queue and the channel is closed with 406 (0 = off; queues can set x-consumer-timeout)")
	memWatermark := fs.Float64("vm-memory-high-watermark", app.DefaultMemoryHighWatermark, "share of total RAM above which publishers are blocked (RabbitMQ's name; 0 disables)")
	memWatermarkAbs := fs.Uint64("vm-memory-high-watermark-absolute", 0, "memory alarm threshold in `bytes` instead of a share of RAM (RabbitMQ's vm_memory_high_watermark.absolute; 0 = use --vm-memory-high-watermark)")
	diskFree := fs.Int64("disk-free-limit", app.DefaultDiskFreeLimit, "free bytes in --data-dir below which publishers are blocked (0 disables)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	pprofAddr := fs.String("pprof", "off", "serve Go's net/http/pprof profiles on this address (e.g. 127.0.0.1:6060); off by default")
	defaultUser := fs.String("default-user", "guest", "user created on first start (administrator, all permissions on \"/\"); RabbitMQ's default_user")
	defaultPass := fs.String("default-pass", "guest", "password of --default-user; prefer HERALD_DEFAULT_PASS, the command line is visible to other local users")
	nodeName := fs.String("node-name", defaultNodeName(), "cluster mode: this node's name, unique in the cluster (its Raft ID and its name in /api/nodes)")
	clusterAddr := fs.String("cluster-addr", "", "cluster mode: HOST:PORT this node listens on for the other nodes (Raft and forwarding), e.g. 10.0.0.1:25672; empty = single node")
	clusterAdvertise := fs.String("cluster-advertise", "", "cluster mode: the address the other nodes dial when it is not --cluster-addr (NAT, containers, a proxy); empty = --cluster-addr")
	join := fs.String("join", "", "cluster mode: comma-separated cluster addresses of the other nodes")
	clusterTLSCert := fs.String("cluster-tls-cert", "", "cluster mode: PEM certificate (chain) this node presents on the cluster port; with --cluster-tls-key and --cluster-tls-ca the port speaks mutual TLS")
	clusterTLSKey := fs.String("cluster-tls-key", "", "cluster mode: PEM private key of --cluster-tls-cert")
	clusterTLSCA := fs.String("cluster-tls-ca", "", "cluster mode: PEM CA bundle of the cluster: a peer is accepted (both ways) only with a certificate it signed")
	loopbackUsers := fs.String("loopback-users", "guest", "comma-separated users who may log in only from localhost; \"none\" lets guest in from anywhere (RabbitMQ's loopback_users)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald serve [flags]\n\nRuns the broker with embedded defaults; no config file needed.\nEvery flag may also be given as HERALD_<NAME> in the environment, e.g. HERALD_AMQP=:5673.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.String("config", "", "YAML file of settings: keys are these flag names (precedence: file < HERALD_* env < flags)")
	if path := configPath(args); path != "" {
		if err := applyConfigFile(fs, path); err != nil {
			fmt.Fprintf(stderr, "herald serve: %v\n", err)
			return 2
		}
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "herald serve: %v\n", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "herald serve: %v\n", err)
		return 2
	}
	srv, err := app.New(app.Config{
		AMQPAddr:  *amqpAddr,
		HTTPAddr:  *httpAddr,
		MQTTAddr:  *mqttAddr,
		STOMPAddr: *stompAddr,
		AMQPSAddr: *amqpsAddr, MQTTSAddr: *mqttsAddr, STOMPSAddr: *stompsAddr, HTTPSAddr: *httpsAddr,
		TLS:             app.TLSConfig{CertFile: *tlsCert, KeyFile: *tlsKey, ClientCAFile: *tlsClientCA},
		Web:             web.Config{CORSOrigins: splitList(*corsOrigins), WebSocketOrigins: splitList(*wsOrigins), MaxPresence: *maxPresence, WSHeartbeat: *wsHeartbeat, Version: version, StatsInterval: *statsInterval, JWT: web.JWTConfig{HS256SecretFile: *jwtSecretFile, RS256PublicKeyFile: *jwtPublicKey, Audience: *jwtAudience, Issuer: *jwtIssuer}},
		DataDir:         *dataDir,
		LoadDefinitions: *loadDefs,
		AMQP: amqp091.Config{
			Heartbeat:      *heartbeat,
			ChannelMax:     uint16(min(*channelMax, 65535)),
			MaxMessageSize: *maxMessage,
			Version:        version,
		},
		MQTT:                mqtt.Config{ReceiveMaximum: uint16(mqttReceiveMax.v), DenyAnonymous: !*mqttAnonymous},
		Logger:              log,
		ConsumerTimeout:     *consumerTimeout,
		QueueMemoryMessages: *queueMemory,
		MaxConnections:      *maxConns,
		MaxPublishRate:      *maxPubRate,
		DefaultUser:         *defaultUser,
		DefaultPass:         *defaultPass,
		LoopbackUsers:       append([]string{}, splitList(*loopbackUsers)...), // non-nil: an emptied list restricts nobody
		MemoryHighWatermark: offIfZero(*memWatermark),
		MemoryLimitBytes:    *memWatermarkAbs,
		DiskFreeLimit:       int64(offIfZero(float64(*diskFree))),
		Cluster: app.ClusterConfig{NodeName: *nodeName, Addr: *clusterAddr, Advertise: *clusterAdvertise, Join: splitList(*join),
			TLSCert: *clusterTLSCert, TLSKey: *clusterTLSKey, TLSCA: *clusterTLSCA},
	})
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if lim := srv.MemoryLimit(); lim > 0 {
		// Collect harder as memory nears the alarm watermark, so that the
		// alarm reflects live data rather than uncollected garbage.
		debug.SetMemoryLimit(int64(lim))
	}
	defer tuneGC(ctx, log)()
	if err := srv.Start(); err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	attrs := []any{"version", version, "data_dir", *dataDir}
	if *clusterAddr != "" {
		bound := *clusterAddr
		if a := srv.Addr("cluster"); a != nil {
			bound = a.String()
		}
		attrs = append(attrs, "node", *nodeName, "cluster", bound)
	}
	for _, name := range []string{"amqp", "amqps", "mqtt", "mqtts", "stomp", "stomps", "http", "https"} {
		if a := srv.Addr(name); a != nil {
			attrs = append(attrs, name, a.String())
		}
	}
	if *pprofAddr != "off" && *pprofAddr != "" {
		stopProfiling, err := serveProfiles(*pprofAddr, log)
		if err != nil {
			log.Error("cannot start the profiling listener", "addr", *pprofAddr, "err", err)
			return 1
		}
		defer stopProfiling()
	}
	log.Info("herald ready", attrs...)
	<-ctx.Done()
	log.Info("shutting down: closing connections with 320 CONNECTION_FORCED")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; remaining connections were dropped", "err", err)
	}
	log.Info("stopped")
	return 0
}

// defaultNodeName is RabbitMQ's default node name shape, herald@host.
func defaultNodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return "herald@" + host
}

// boundedUint is a flag value: a whole number from lo to hi, checked
// wherever it comes from (flag, HERALD_* variable, config file).
type boundedUint struct{ v, lo, hi uint64 }

func (b *boundedUint) String() string { return strconv.FormatUint(b.v, 10) }

func (b *boundedUint) Set(s string) error {
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil || v < b.lo || v > b.hi {
		return fmt.Errorf("must be a whole number from %d to %d", b.lo, b.hi)
	}
	b.v = v
	return nil
}

// offIfZero maps a flag's 0 ("disable") to the server's negative "off"
// (its 0 means "default").
func offIfZero(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// applyEnv sets flags from HERALD_* variables before the command line is parsed.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "HERALD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid %s=%q: %v", name, v, e)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: use text or json", format)
}
