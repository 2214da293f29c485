package bench

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Scenario names.
const (
	ScenarioThroughput = "throughput"
	ScenarioFanout     = "fanout"
	ScenarioRPC        = "rpc"
	ScenarioLatency    = "latency"
	ScenarioMQTTFanout = "mqtt-fanout"
	ScenarioMQTTIdle   = "mqtt-idle"
)

// IsMQTT reports whether scenario is one of the MQTT scenarios, which use
// an mqtt:// URL and the Subscribers, QoS and Connections fields.
func IsMQTT(scenario string) bool {
	return scenario == ScenarioMQTTFanout || scenario == ScenarioMQTTIdle
}

// Scenarios lists the scenarios with a one-line description each, in the
// order help text should show them.
var Scenarios = []struct{ Name, Summary string }{
	{ScenarioThroughput, "P producers -> one queue -> C competing consumers (manual ack, prefetch); msgs/s received"},
	{ScenarioFanout, "producer -> fanout exchange -> N queues -> one consumer each; deliveries/s and publishes/s"},
	{ScenarioRPC, "callers send a request and wait for the reply (reply_to + correlation_id); round trips/s, RTT"},
	{ScenarioLatency, "1 producer at a fixed --rate (default 1000/s) -> 1 consumer; end-to-end latency percentiles"},
	{ScenarioMQTTFanout, "MQTT: 1 publisher -> one topic -> N --subscribers (default 100), --qos 0|1; deliveries/s, latency, loss per subscriber"},
	{ScenarioMQTTIdle, "MQTT: hold N idle --connections (default 10,000, keep-alive 60s); connect rate, broker RSS per connection"},
	{ScenarioWSFanout, wsFanoutSummary},
	{ScenarioWSIdle, wsIdleSummary},
	{ScenarioStream, streamSummary},
	{ScenarioRPCGateway, rpcGatewaySummary},
	{ScenarioRPCSDK, rpcSDKSummary},
	{ScenarioNATSRPC, natsRPCSummary},
	{ScenarioStreamPublish, streamPublishSummary},
	{ScenarioStreamReplay, streamReplaySummary},
	{ScenarioStreamTail, streamTailSummary},
}

// Defaults.
const (
	DefaultURL             = "amqp://guest:guest@localhost:5672/"
	DefaultMQTTURL         = "mqtt://localhost:1883"
	DefaultSubscribers     = 100
	DefaultConnections     = 10000
	MQTTIdleKeepAlive      = 60 * time.Second
	DefaultFanoutQueues    = 10
	DefaultCallers         = 16
	DefaultLatencyRate     = 1000
	DefaultConfirmWindow   = 1000
	DefaultPrefetch        = 1000
	DefaultSize            = 128
	DefaultDuration        = 10 * time.Second
	DefaultWarmup          = time.Second
	DefaultDrain           = 5 * time.Second
	DefaultRPCTimeout      = 5 * time.Second
	maxSize                = 128 << 20 // RabbitMQ's default max_message_size
	maxPrefetch            = 65535     // basic.qos prefetch-count is a short
	namePrefix             = "herald-bench-"
	drainIdle              = time.Second // drain ends after this long without a delivery
	progressEvery          = time.Second
	setupConnectTimeout    = 5 * time.Second
	connectionCloseWaitFor = 2 * time.Second
)

// Config describes one benchmark run. Zero values of numeric fields mean
// "default" (see Normalize) except Warmup (0 = no warmup) and Prefetch (0 =
// unlimited, as in AMQP); use DefaultConfig for the command-line defaults.
// Durations are nanoseconds in JSON.
type Config struct {
	URL      string        `json:"url"`
	Scenario string        `json:"scenario"`
	Duration time.Duration `json:"duration_ns"` // measured window
	Warmup   time.Duration `json:"warmup_ns"`   // before the window, reported separately
	Drain    time.Duration `json:"drain_ns"`    // longest wait for in-flight messages after producers stop

	Producers int `json:"producers"` // throughput, fanout, latency
	Consumers int `json:"consumers"` // throughput, latency; rpc: number of servers; fanout: one per queue
	Queues    int `json:"queues"`    // fanout: bound queues (default 10); throughput/latency: default 1

	Size          int  `json:"size"`           // message body bytes, >= HeaderSize
	Prefetch      int  `json:"prefetch"`       // basic.qos prefetch-count per consumer, 0 = unlimited
	AckEvery      int  `json:"ack_every"`      // ack every N deliveries with multiple=true (1 = each, multiple=false)
	Rate          int  `json:"rate"`           // total msgs/s (rpc: requests/s), 0 = as fast as possible
	Confirm       bool `json:"confirm"`        // publisher confirms
	ConfirmWindow int  `json:"confirm_window"` // outstanding unconfirmed publishes per producer
	Persistent    bool `json:"persistent"`     // delivery-mode 2 and durable (still auto-delete) queues
	AutoAck       bool `json:"auto_ack"`       // consume with no-ack
	// QueueType is the x-queue-type of the throughput, latency and fanout
	// queues ("" = the broker's default, classic); quorum queues are
	// declared durable and not auto-delete, as they must be.
	QueueType string `json:"queue_type,omitempty"`

	Callers       int           `json:"callers"`         // rpc
	DirectReplyTo bool          `json:"direct_reply_to"` // rpc: use amq.rabbitmq.reply-to
	RPCTimeout    time.Duration `json:"rpc_timeout_ns"`  // rpc: give up waiting for a reply

	// stream-replay: messages published, then read by every consumer
	Messages int `json:"messages,omitempty"`

	// rpc-gateway: the HTTP API, http://user:password@host:port
	HTTPURL string `json:"http_url,omitempty"`

	BrokerPID int `json:"broker_pid,omitempty"` // if > 0, report the broker's CPU use from /proc/<pid>/stat

	Subscribers int `json:"subscribers,omitempty"` // mqtt-fanout: subscriber connections (default 100)
	QoS         int `json:"qos"`                   // mqtt-fanout: 0 or 1, for the publish and the subscriptions
	Connections int `json:"connections,omitempty"` // mqtt-idle: idle connections to hold (default 10,000)
	// mqtt-fanout: subscribers use the paho client library instead of the
	// bench's lean one (see mqttlean.go)
	PahoSubscribers bool `json:"paho_subscribers,omitempty"`
	// ws-fanout: subscribers use the coder/websocket client library
	// instead of the bench's lean reader (see wslean.go)
	LibrarySubscribers bool `json:"library_subscribers,omitempty"`
	// mqtt-fanout, mqtt-idle, ws-fanout: local addresses the connections
	// are bound to in turn (--source-addrs), for more ephemeral ports
	SourceAddrs []string `json:"source_addrs,omitempty"`
}

// DefaultConfig returns the defaults of the `herald bench` flags.
func DefaultConfig() Config {
	return Config{
		URL:           DefaultURL,
		Scenario:      ScenarioThroughput,
		Duration:      DefaultDuration,
		Warmup:        DefaultWarmup,
		Drain:         DefaultDrain,
		Producers:     1,
		Consumers:     1,
		Size:          DefaultSize,
		Prefetch:      DefaultPrefetch,
		AckEvery:      1,
		ConfirmWindow: DefaultConfirmWindow,
		Callers:       DefaultCallers,
		RPCTimeout:    DefaultRPCTimeout,
	}
}

// Normalize fills in scenario-dependent defaults and checks the
// configuration. Error messages name the command-line flag at fault.
func (c Config) Normalize() (Config, error) {
	c.Scenario = strings.ToLower(strings.TrimSpace(c.Scenario))
	if c.Scenario == "" {
		c.Scenario = ScenarioThroughput
	}
	known := false
	var names []string
	for _, s := range Scenarios {
		names = append(names, s.Name)
		known = known || s.Name == c.Scenario
	}
	if !known {
		return c, fmt.Errorf("unknown --scenario %q (choose one of: %s)", c.Scenario, strings.Join(names, ", "))
	}
	if len(c.SourceAddrs) > 0 && !IsMQTT(c.Scenario) && c.Scenario != ScenarioWSFanout && c.Scenario != ScenarioWSIdle {
		return c, fmt.Errorf("--source-addrs only applies to --scenario %s, %s, %s and %s", ScenarioMQTTFanout, ScenarioMQTTIdle, ScenarioWSFanout, ScenarioWSIdle)
	}
	if IsMQTT(c.Scenario) {
		return c.normalizeMQTT()
	}
	if c.Scenario == ScenarioWSFanout {
		return c.normalizeWS()
	}
	if c.Scenario == ScenarioWSIdle {
		return c.normalizeWSIdle()
	}
	if c.Scenario == ScenarioRPCGateway {
		return c.normalizeGateway()
	}
	if isRef(c.Scenario) {
		return c.normalizeRef()
	}
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if _, err := amqp.ParseURI(c.URL); err != nil {
		if isMQTTURL(c.URL) {
			return c, fmt.Errorf("--url %q is an MQTT URL but --scenario %s speaks AMQP (the MQTT scenarios are %s and %s)", redactURL(c.URL), c.Scenario, ScenarioMQTTFanout, ScenarioMQTTIdle)
		}
		return c, fmt.Errorf("invalid --url %q: %v (expected amqp://user:password@host:port/vhost)", c.URL, err)
	}
	mqttOnly := fmt.Sprintf("only applies to the MQTT scenarios (%s, %s)", ScenarioMQTTFanout, ScenarioMQTTIdle)
	if err := firstBadFlag([]flagCheck{
		{c.Subscribers != 0, "--subscribers", mqttOnly}, {c.QoS != 0, "--qos", mqttOnly}, {c.Connections != 0, "--connections", mqttOnly}, {c.PahoSubscribers, "--paho-subscribers", mqttOnly},
		{c.LibrarySubscribers, "--library-subscribers", "only applies to --scenario " + ScenarioWSFanout},
	}); err != nil {
		return c, err
	}
	if err := c.checkRanges(amqpNumericFlags); err != nil {
		return c, err
	}

	setDefault(&c.Duration, DefaultDuration)
	setDefault(&c.Drain, DefaultDrain)
	setDefault(&c.RPCTimeout, DefaultRPCTimeout)
	setDefault(&c.Producers, 1)
	setDefault(&c.Consumers, 1)
	setDefault(&c.Size, DefaultSize)
	setDefault(&c.AckEvery, 1)
	setDefault(&c.ConfirmWindow, DefaultConfirmWindow)
	setDefault(&c.Callers, DefaultCallers)

	if err := checkHeaderFits(c.Size); err != nil {
		return c, err
	}
	if c.Size > maxSize {
		return c, fmt.Errorf("--size %d is larger than %d bytes (RabbitMQ's default max_message_size)", c.Size, maxSize)
	}
	if !c.AutoAck && c.Prefetch > 0 && c.AckEvery > c.Prefetch {
		return c, fmt.Errorf("--ack-every %d is larger than --prefetch %d: consumers would stall waiting for deliveries the broker holds back until they ack; lower --ack-every or raise --prefetch", c.AckEvery, c.Prefetch)
	}

	switch c.Scenario {
	case ScenarioFanout:
		setDefault(&c.Queues, DefaultFanoutQueues)
		c.Consumers = c.Queues // one consumer per queue
	case ScenarioRPC:
		c.Queues = 1
		c.Producers = c.Callers
		if c.Rate > 0 && c.Rate < c.Callers {
			return c, fmt.Errorf("--rate %d is lower than --callers %d: every caller needs at least 1 request/s", c.Rate, c.Callers)
		}
	case ScenarioStream:
		c.Queues, c.Confirm, c.AutoAck = 1, true, false
		if c.Prefetch == 0 {
			c.Prefetch = DefaultPrefetch // a stream consumer needs one
		}
	default: // throughput, latency
		setDefault(&c.Queues, 1)
		if c.Scenario == ScenarioLatency {
			setDefault(&c.Rate, DefaultLatencyRate)
		}
		if c.Queues > 1 && (c.Producers < c.Queues || c.Consumers < c.Queues) {
			return c, fmt.Errorf("--queues %d spreads producers and consumers round-robin over the queues, so it needs --producers and --consumers of at least %d (got %d and %d)", c.Queues, c.Queues, c.Producers, c.Consumers)
		}
	}
	if c.Scenario != ScenarioRPC {
		if err := c.checkRatePerProducer(); err != nil {
			return c, err
		}
	}
	if c.DirectReplyTo && c.Scenario != ScenarioRPC {
		return c, errors.New("--direct-reply-to only applies to --scenario rpc")
	}
	return c, checkBrokerPID(c.BrokerPID)
}

// flagCheck is one rule of Normalize: bad means flag breaks it, and the
// error says "flag msg".
type flagCheck struct {
	bad  bool
	flag string
	msg  string
}

// firstBadFlag returns the error of the first check that failed, if any.
func firstBadFlag(checks []flagCheck) error {
	for _, ch := range checks {
		if ch.bad {
			return fmt.Errorf("%s %s", ch.flag, ch.msg)
		}
	}
	return nil
}

// The numeric flags whose ranges the AMQP and the MQTT scenarios check
// (an MQTT run ignores the AMQP-only knobs that have command-line defaults,
// whatever their value).
var (
	amqpNumericFlags = []string{"--duration", "--warmup", "--drain", "--producers", "--consumers", "--queues", "--size",
		"--prefetch", "--ack-every", "--rate", "--confirm-window", "--callers", "--rpc-timeout", "--broker-pid"}
	mqttNumericFlags = []string{"--duration", "--warmup", "--drain", "--producers", "--size", "--rate",
		"--confirm-window", "--broker-pid", "--subscribers", "--qos", "--connections"}
)

// checkRanges checks the numeric flags in flags and reports the first one
// out of range in the order below, whatever the order of flags, so that
// every scenario names the same flag first when several are wrong.
func (c Config) checkRanges(flags []string) error {
	var checks []flagCheck
	for _, ch := range []flagCheck{
		{c.Duration < 0, "--duration", "must be positive"},
		{c.Warmup < 0, "--warmup", "must not be negative (0 disables the warmup)"},
		{c.Drain < 0, "--drain", "must not be negative"},
		{c.Producers < 0, "--producers", "must be at least 1"},
		{c.Consumers < 0, "--consumers", "must be at least 1"},
		{c.Queues < 0, "--queues", "must be at least 1"},
		{c.Size < 0, "--size", "must be positive"},
		{c.Prefetch < 0 || c.Prefetch > maxPrefetch, "--prefetch", fmt.Sprintf("must be between 0 (unlimited) and %d", maxPrefetch)},
		{c.AckEvery < 0, "--ack-every", "must be at least 1"},
		{c.Rate < 0, "--rate", "must not be negative (0 = as fast as possible)"},
		{c.ConfirmWindow < 0, "--confirm-window", "must be at least 1"},
		{c.Callers < 0, "--callers", "must be at least 1"},
		{c.RPCTimeout < 0, "--rpc-timeout", "must be positive"},
		{c.BrokerPID < 0, "--broker-pid", "must be a process id"},
		{c.Subscribers < 0, "--subscribers", "must be at least 1"},
		{c.QoS < 0 || c.QoS > 1, "--qos", "must be 0 or 1"},
		{c.Connections < 0, "--connections", "must be at least 1"},
	} {
		if slices.Contains(flags, ch.flag) {
			checks = append(checks, ch)
		}
	}
	return firstBadFlag(checks)
}

// setDefault gives a flag left unset (zero) its default d.
func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// checkHeaderFits checks that --size leaves room for the header.
func checkHeaderFits(size int) error {
	if size < HeaderSize {
		return fmt.Errorf("--size %d is too small: every message carries a %d-byte header (producer, sequence, timestamps), so use --size %d or more", size, HeaderSize, HeaderSize)
	}
	return nil
}

// checkRatePerProducer checks that a paced run gives every producer at
// least 1 msg/s.
func (c Config) checkRatePerProducer() error {
	if c.Rate > 0 && c.Rate < c.Producers {
		return fmt.Errorf("--rate %d is lower than --producers %d: every producer needs at least 1 msg/s", c.Rate, c.Producers)
	}
	return nil
}

// checkBrokerPID checks that the --broker-pid process, if one is given,
// exists and its CPU time can be read.
func checkBrokerPID(pid int) error {
	if pid <= 0 {
		return nil
	}
	if _, err := ProcessCPU(pid); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("--broker-pid %d: no such process (find the broker's pid with e.g. `pgrep -f 'herald serve'` or `pgrep beam.smp`)", pid)
		}
		return fmt.Errorf("--broker-pid %d: cannot read its CPU time: %v (this needs Linux /proc)", pid, err)
	}
	return nil
}

// redactURL hides the password in a broker URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Redacted()
}

// Phase holds the figures of the warmup phase.
type Phase struct {
	Elapsed    time.Duration  `json:"elapsed_ns"`
	Sent       uint64         `json:"sent"`
	Received   uint64         `json:"received"`
	MsgsPerSec float64        `json:"msgs_per_sec"`
	Latency    LatencySummary `json:"latency"`
}

// Result is the outcome of a run.
//
// Sent ... Backlog cover the whole run (warmup, window and drain); the rates
// cover the measured window only; the latency figures (the embedded
// LatencySummary: P50, P99, P999, Max, ...) cover messages sent during the
// window. In the rpc scenario Sent counts requests, Received answered
// requests and MsgsPerSec round trips per second. In the fanout scenario
// Received and MsgsPerSec count deliveries (one publish yields Queues
// deliveries).
type Result struct {
	Scenario    string    `json:"scenario"`
	Description string    `json:"description"`
	Config      Config    `json:"config"` // normalized; password redacted
	RunID       string    `json:"run_id"`
	Start       time.Time `json:"start"`

	Sent        uint64 `json:"sent"`
	Confirmed   uint64 `json:"confirmed,omitempty"`   // publishes acked by the broker (--confirm)
	Nacked      uint64 `json:"nacked,omitempty"`      // publishes nacked by the broker (--confirm)
	Unconfirmed uint64 `json:"unconfirmed,omitempty"` // publishes still unconfirmed when the run ended (--confirm)
	Expected    uint64 `json:"expected"`              // deliveries that should have arrived
	Received    uint64 `json:"received"`              // deliveries that did arrive, duplicates included
	Lost        uint64 `json:"lost"`
	Duplicated  uint64 `json:"duplicated"`
	Redelivered uint64 `json:"redelivered"`
	OutOfOrder  uint64 `json:"out_of_order"`
	Malformed   uint64 `json:"malformed"`          // deliveries that did not carry a valid header (rpc: also wrong correlation_id)
	Backlog     uint64 `json:"backlog"`            // messages still ready in the queues when the drain ended (not counted as lost)
	Timeouts    uint64 `json:"timeouts,omitempty"` // rpc: requests not answered within --rpc-timeout

	Elapsed        time.Duration `json:"elapsed_ns"` // length of the measured window
	WindowSent     uint64        `json:"window_sent"`
	WindowReceived uint64        `json:"window_received"`
	MsgsPerSec     float64       `json:"msgs_per_sec"` // received (fanout: deliveries; rpc: round trips) per second
	SentPerSec     float64       `json:"sent_per_sec"` // publishes (rpc: requests) per second
	MBPerSec       float64       `json:"mb_per_sec"`   // received body bytes per second / 10^6

	LatencySummary                  // end-to-end (rpc: round-trip) latency from the actual send time
	ScheduleLatency *LatencySummary `json:"schedule_latency,omitempty"` // from the intended send time (paced runs)
	ConfirmLatency  *LatencySummary `json:"confirm_latency,omitempty"`  // publish to broker ack (--confirm)

	Warmup        *Phase        `json:"warmup,omitempty"`
	DrainTime     time.Duration `json:"drain_ns"`
	DrainTimedOut bool          `json:"drain_timed_out"`

	BrokerCPU           float64 `json:"broker_cpu_seconds,omitempty"`         // during the window (--broker-pid)
	MsgsPerBrokerCPUSec float64 `json:"msgs_per_broker_cpu_second,omitempty"` // WindowReceived / BrokerCPU
	BenchCPU            float64 `json:"bench_cpu_seconds"`                    // this process during the window

	PerSubscriber []SubscriberTally `json:"per_subscriber,omitempty"` // mqtt-fanout: accounting of each subscriber
	// mqtt-fanout (one publisher), ws-fanout: publish to last delivery per message
	LastDelivery *LastDeliveryResult `json:"last_delivery,omitempty"`
	Idle         *IdleResult         `json:"idle,omitempty"`   // mqtt-idle
	WS           *WSResult           `json:"ws,omitempty"`     // ws-fanout
	Stream       *StreamResult       `json:"stream,omitempty"` // stream

	Interrupted bool     `json:"interrupted"` // the window was cut short by cancellation
	Warnings    []string `json:"warnings,omitempty"`
}

// validIPs reports whether every entry is an IP address.
