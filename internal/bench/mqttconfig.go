package bench

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// mqttSchemes are the URL schemes the MQTT client library dials: plain TCP
// (mqtt, tcp), TLS (mqtts, ssl, tls) and WebSocket (ws, wss).
var mqttSchemes = []string{"mqtt", "tcp", "mqtts", "ssl", "tls", "ws", "wss"}

// isMQTTURL reports whether s parses as a URL with one of mqttSchemes.
func isMQTTURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	for _, sc := range mqttSchemes {
		if strings.EqualFold(u.Scheme, sc) {
			return true
		}
	}
	return false
}

// parseMQTTURL checks an MQTT broker URL: a known scheme and a host:port
// (the port is required so that a run against the wrong broker is never a
// silent default). User and password, if any, are taken from the URL.
func parseMQTTURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if !isMQTTURL(s) {
		return nil, fmt.Errorf("scheme %q is not one of %s", u.Scheme, strings.Join(mqttSchemes, ", "))
	}
	if u.Hostname() == "" || u.Port() == "" {
		return nil, errors.New("host and port are required")
	}
	return u, nil
}

// normalizeMQTT is Normalize for the MQTT scenarios. The AMQP-only knobs
// that change what is measured are refused rather than silently ignored;
// the ones that carry command-line defaults (prefetch, ack-every, confirm
// window) are ignored.
func (c Config) normalizeMQTT() (Config, error) {
	// The command line always passes the AMQP default URL; an MQTT scenario
	// without an explicit --url means the conventional local MQTT port.
	if c.URL == "" || c.URL == DefaultURL {
		c.URL = DefaultMQTTURL
	}
	if _, err := parseMQTTURL(c.URL); err != nil {
		hint := "expected mqtt://user:password@host:port"
		if strings.HasPrefix(strings.ToLower(c.URL), "amqp") {
			hint = "--scenario " + c.Scenario + " speaks MQTT: " + hint
		}
		return c, fmt.Errorf("invalid --url %q: %v (%s)", redactURL(c.URL), err, hint)
	}
	if err := c.checkRanges(mqttNumericFlags); err != nil {
		return c, err
	}
	if err := firstBadFlag([]flagCheck{
		{c.Confirm, "--confirm", "does not apply to MQTT (use --qos 1: the publisher then waits for PUBACKs)"},
		{c.Persistent, "--persistent", "does not apply to MQTT"},
		{c.AutoAck, "--auto-ack", "does not apply to MQTT"},
		{c.DirectReplyTo, "--direct-reply-to", "only applies to --scenario rpc"},
		{c.Queues != 0, "--queues", "does not apply to MQTT (use --subscribers)"},
		{c.LibrarySubscribers, "--library-subscribers", "only applies to --scenario " + ScenarioWSFanout + " (mqtt-fanout has --paho-subscribers)"},
	}); err != nil {
		return c, err
	}
	setDefault(&c.Duration, DefaultDuration)
	setDefault(&c.Drain, DefaultDrain)
	setDefault(&c.Size, DefaultSize)
	setDefault(&c.ConfirmWindow, DefaultConfirmWindow)
	switch c.Scenario {
	case ScenarioMQTTFanout:
		if c.Connections != 0 {
			return c, fmt.Errorf("--connections only applies to --scenario %s", ScenarioMQTTIdle)
		}
		setDefault(&c.Producers, 1)
		setDefault(&c.Subscribers, DefaultSubscribers)
		c.Consumers = c.Subscribers
		if err := checkHeaderFits(c.Size); err != nil {
			return c, err
		}
		if c.Size > maxMQTTPayload {
			return c, fmt.Errorf("--size %d is larger than MQTT's largest packet (%d bytes)", c.Size, maxMQTTPayload)
		}
		if err := c.checkRatePerProducer(); err != nil {
			return c, err
		}
	case ScenarioMQTTIdle:
		if c.Subscribers != 0 || c.QoS != 0 || c.Rate != 0 {
			return c, fmt.Errorf("--subscribers, --qos and --rate only apply to --scenario %s", ScenarioMQTTFanout)
		}
		setDefault(&c.Connections, DefaultConnections)
		// Nothing is published: the publishing knobs are zeroed so that the
		// JSON result does not suggest otherwise.
		c.Producers, c.Consumers, c.Warmup = 0, 0, 0
	}
	return c, checkBrokerPID(c.BrokerPID)
}

// maxMQTTPayload is the largest payload that fits MQTT's 4-byte remaining
// length (268,435,455) with room for the topic and packet id.
const maxMQTTPayload = 268435455 - 1024

// SubscriberTally is the accounting of one mqtt-fanout subscriber, which
// should receive every publish exactly once.
type SubscriberTally struct {
	Subscriber int    `json:"subscriber"`
	Expected   uint64 `json:"expected"`
	Received   uint64 `json:"received"`
	Lost       uint64 `json:"lost"`
	Duplicated uint64 `json:"duplicated"`
	OutOfOrder uint64 `json:"out_of_order"`
	Malformed  uint64 `json:"malformed,omitempty"`
}

// IdleResult holds the figures of the mqtt-idle scenario.
type IdleResult struct {
	Requested      int           `json:"requested"`
	Connected      int           `json:"connected"` // CONNACK received
	Failed         int           `json:"failed"`    // connect refused or timed out
	FirstError     string        `json:"first_error,omitempty"`
	StillConnected int           `json:"still_connected"` // at the end of the hold
	ConnectTime    time.Duration `json:"connect_ns"`      // first dial to last CONNACK
	ConnectsPerSec float64       `json:"connects_per_sec"`
	// ConnectCPU is the broker's CPU time (seconds) from the first dial to
	// the last connect, with --broker-pid: what the connects cost the
	// broker, a figure that a loaded machine (or a slow client) changes
	// far less than the connect rate.
	ConnectCPU  float64       `json:"connect_cpu_s,omitempty"`
	Hold        time.Duration `json:"hold_ns"` // how long the connections were held idle
	KeepAlive   time.Duration `json:"keep_alive_ns"`
	NoFileLimit uint64        `json:"nofile_limit"` // this process's RLIMIT_NOFILE after raising it

	// Broker resident set size (VmRSS, bytes) before connecting and at the
	// end of the hold, when --broker-pid is given; RSSPerConn is their
	// difference divided by Connected.
	RSSBefore  uint64  `json:"rss_before_bytes,omitempty"`
	RSSAfter   uint64  `json:"rss_after_bytes,omitempty"`
	RSSPerConn float64 `json:"rss_per_conn_bytes,omitempty"`
}
