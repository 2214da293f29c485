package bench

import (
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The reference scenarios: the workloads issues 16 (streams) and 17 (RPC)
// compare Herald with RabbitMQ and NATS on, each measured with the other
// system's own client so the comparison is the one a user would make.
//
//   - rpc-sdk: --callers goroutines call one service through Herald's Go
//     SDK (pkg/rpc: one Client, as its doc recommends, direct reply-to,
//     protobuf bodies of exactly --size bytes) answered by --consumers
//     instances (rpc.Server). Round trips per second and call latency.
//   - nats-rpc: the same over NATS core request/reply with nats.go: one
//     connection, --callers goroutines calling nc.Request, --consumers
//     subscribers answering with msg.Respond.
//   - stream-publish, stream-replay, stream-tail: a stream (AMQP 0-9-1
//     `x-queue-type: stream` for an amqp:// --url, a JetStream stream with
//     file storage for a nats:// --url). publish: --producers publish with
//     confirms (JetStream: acks), --confirm-window in flight each; confirmed
//     publishes per second. replay: --messages are published first, then
//     --consumers consumers each read all of them from the first offset
//     (AMQP `x-stream-offset: first`, --prefetch, manual acks; JetStream
//     ordered consumers); deliveries per second over all consumers. tail:
//     one producer at --rate (default 1,000/s) and one consumer from the
//     next offset; publish-to-delivery latency.
const (
	ScenarioRPCSDK        = "rpc-sdk"
	ScenarioNATSRPC       = "nats-rpc"
	ScenarioStreamPublish = "stream-publish"
	ScenarioStreamReplay  = "stream-replay"
	ScenarioStreamTail    = "stream-tail"
)

// Summaries of the reference scenarios for the help text.
const (
	rpcSDKSummary        = "pkg/rpc SDK: N --callers on one Client -> --consumers service instances, protobuf --size B; round trips/s, latency"
	natsRPCSummary       = "NATS core request/reply (nats.go, --url nats://...): N --callers -> --consumers responders; round trips/s, latency"
	streamPublishSummary = "publish with confirms into a stream (amqp:// x-queue-type stream, or nats:// JetStream file storage); confirmed/s"
	streamReplaySummary  = "publish --messages (default 1,000,000) into a stream, then --consumers read them all from first; deliveries/s"
	streamTailSummary    = "1 producer at --rate (default 1000/s) into a stream -> 1 tailing consumer; publish-to-delivery latency"
)

// Defaults of the reference scenarios.
const (
	DefaultNATSURL        = "nats://127.0.0.1:4222"
	DefaultReplayMessages = 1_000_000
)

// isRef reports whether scenario is one of the reference scenarios.
func isRef(scenario string) bool {
	return scenario == ScenarioRPCSDK || scenario == ScenarioNATSRPC || isStream(scenario)
}

// isStream reports whether scenario is one of the stream scenarios.
func isStream(scenario string) bool {
	return scenario == ScenarioStreamPublish || scenario == ScenarioStreamReplay || scenario == ScenarioStreamTail
}

// IsNATSURL reports whether u is a NATS URL (nats:// or tls://).
func IsNATSURL(u string) bool {
	l := strings.ToLower(u)
	return strings.HasPrefix(l, "nats://") || strings.HasPrefix(l, "tls://")
}

// normalizeRef is Normalize for the reference scenarios.
func (c Config) normalizeRef() (Config, error) {
	switch {
	case c.Scenario == ScenarioNATSRPC:
		// The command line always passes the AMQP default URL.
		if c.URL == "" || c.URL == DefaultURL {
			c.URL = DefaultNATSURL
		}
		if !IsNATSURL(c.URL) {
			return c, fmt.Errorf("--scenario %s speaks NATS: --url must be nats://host:port (got %q)", c.Scenario, redactURL(c.URL))
		}
	case c.URL == "":
		c.URL = DefaultURL
	}
	if IsNATSURL(c.URL) {
		if c.Scenario == ScenarioRPCSDK {
			return c, fmt.Errorf("--scenario %s calls Herald's AMQP SDK: --url must be amqp://...; for NATS request/reply use --scenario %s", c.Scenario, ScenarioNATSRPC)
		}
		if u, err := url.Parse(c.URL); err != nil || u.Host == "" {
			return c, fmt.Errorf("invalid --url %q: want nats://host:port", redactURL(c.URL))
		}
	} else if _, err := amqp.ParseURI(c.URL); err != nil {
		return c, fmt.Errorf("invalid --url %q: %v (expected amqp://user:password@host:port/vhost or nats://host:port)", redactURL(c.URL), err)
	}
	rpc := !isStream(c.Scenario)
	if err := firstBadFlag([]flagCheck{
		{c.Subscribers != 0, "--subscribers", "does not apply to --scenario " + c.Scenario},
		{c.QoS != 0, "--qos", "does not apply to --scenario " + c.Scenario},
		{c.Connections != 0, "--connections", "does not apply to --scenario " + c.Scenario},
		{c.PahoSubscribers, "--paho-subscribers", "does not apply to --scenario " + c.Scenario},
		{c.LibrarySubscribers, "--library-subscribers", "does not apply to --scenario " + c.Scenario},
		{c.DirectReplyTo, "--direct-reply-to", "does not apply to --scenario " + c.Scenario + " (the SDK always uses direct reply-to)"},
		{c.HTTPURL != "", "--http-url", "does not apply to --scenario " + c.Scenario},
		{c.Queues != 0, "--queues", "does not apply to --scenario " + c.Scenario},
		{c.AutoAck && !rpc, "--auto-ack", "does not apply: stream consumers need manual acks (acks return credit)"},
		{c.Rate != 0 && rpc, "--rate", "does not apply to --scenario " + c.Scenario + " (callers go as fast as the replies come)"},
		{c.Messages != 0 && c.Scenario != ScenarioStreamReplay, "--messages", "only applies to --scenario " + ScenarioStreamReplay},
	}); err != nil {
		return c, err
	}
	if err := c.checkRanges(amqpNumericFlags); err != nil {
		return c, err
	}
	if c.Messages < 0 {
		return c, fmt.Errorf("--messages must be at least 1")
	}
	setDefault(&c.Duration, DefaultDuration)
	setDefault(&c.Drain, DefaultDrain)
	setDefault(&c.RPCTimeout, DefaultRPCTimeout)
	setDefault(&c.Callers, DefaultCallers)
	setDefault(&c.Consumers, 1)
	setDefault(&c.Producers, 1)
	setDefault(&c.Size, DefaultSize)
	setDefault(&c.AckEvery, 1)
	setDefault(&c.ConfirmWindow, DefaultConfirmWindow)
	if err := checkHeaderFits(c.Size); err != nil {
		return c, err
	}
	if c.Size > maxSize {
		return c, fmt.Errorf("--size %d is larger than %d bytes", c.Size, maxSize)
	}
	switch c.Scenario {
	case ScenarioRPCSDK, ScenarioNATSRPC:
		c.Producers, c.Queues = c.Callers, 1
	case ScenarioStreamPublish:
		c.Confirm, c.Persistent, c.Queues = true, true, 1
	case ScenarioStreamReplay:
		setDefault(&c.Messages, DefaultReplayMessages)
		c.Confirm, c.Persistent, c.Queues, c.Producers = true, true, 1, 1
	case ScenarioStreamTail:
		setDefault(&c.Rate, DefaultLatencyRate)
		c.Confirm, c.Persistent, c.Queues, c.Producers, c.Consumers = true, true, 1, 1, 1
	}
	if isStream(c.Scenario) {
		// A stream consumer must have a prefetch (RabbitMQ refuses one without).
		setDefault(&c.Prefetch, DefaultPrefetch)
		if c.AckEvery > c.Prefetch {
			return c, fmt.Errorf("--ack-every %d is larger than --prefetch %d: consumers would stall", c.AckEvery, c.Prefetch)
		}
	}
	return c, checkBrokerPID(c.BrokerPID)
}

// describeRef is Describe for the reference scenarios.
func describeRef(c Config) string {
	nats := IsNATSURL(c.URL)
	switch c.Scenario {
	case ScenarioRPCSDK:
		return fmt.Sprintf("pkg/rpc: %s on 1 client -> %s, %d B protobuf", plural(c.Callers, "caller"), plural(c.Consumers, "service instance"), c.Size)
	case ScenarioNATSRPC:
		return fmt.Sprintf("NATS request/reply: %s on 1 connection -> %s, %d B", plural(c.Callers, "caller"), plural(c.Consumers, "responder"), c.Size)
	}
	kind := "AMQP stream (x-queue-type stream)"
	if nats {
		kind = "JetStream stream (file storage)"
	}
	switch c.Scenario {
	case ScenarioStreamPublish:
		return fmt.Sprintf("%s -> %s, %d B, confirms (window %d)", plural(c.Producers, "producer"), kind, c.Size, c.ConfirmWindow)
	case ScenarioStreamReplay:
		how := fmt.Sprintf("prefetch %d, manual ack", c.Prefetch)
		if nats {
			how = fmt.Sprintf("ordered consumers, %d pulled at a time", c.Prefetch)
		}
		return fmt.Sprintf("%s messages of %d B in a %s, replayed from first by %s at once, %s",
			FormatCount(uint64(c.Messages)), c.Size, kind, plural(c.Consumers, "consumer"), how)
	default:
		return fmt.Sprintf("1 producer at %s msg/s -> %s -> 1 tailing consumer, %d B", FormatCount(uint64(c.Rate)), kind, c.Size)
	}
}

// refMeter counts what a reference scenario sent and got back (calls made
// and answered, publishes sent and confirmed, messages delivered) and the
// latency of what it got back, per phase.
type refMeter struct {
	sent, recv atomic.Uint64
	lat        phasedHistogram
	sched      *phasedHistogram // from the intended send time (paced runs)
}

func (m *refMeter) counts() (sent, recv uint64) { return m.sent.Load(), m.recv.Load() }

func (m *refMeter) latency(dst *Snapshot) {
	dst.Add(&m.lat[warmupPhase])
	dst.Add(&m.lat[windowPhase])
}

// done records one answered call, confirmed publish or delivery sent at
// sentAt (and meant to be sent at intended; 0 when unpaced).
func (m *refMeter) done(r *run, sentAt, intended int64) {
	now := time.Now().UnixNano()
	m.lat.record(r, sentAt, now)
	if m.sched != nil && intended != 0 {
		m.sched[r.phaseOf(sentAt)].Record(time.Duration(now - intended))
	}
	m.recv.Add(1)
}

// fillLatency puts the window's latency into res.
func (m *refMeter) fillLatency(res *Result) {
	res.LatencySummary = m.lat[windowPhase].Snapshot().Summary()
	if res.Warmup != nil {
		res.Warmup.Latency = m.lat[warmupPhase].Snapshot().Summary()
	}
	if m.sched != nil {
		s := m.sched[windowPhase].Snapshot().Summary()
		res.ScheduleLatency = &s
	}
}
