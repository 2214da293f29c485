package broker

import (
	"time"
)

// Overflow behaviours of a length-limited queue (x-overflow).
const (
	OverflowDropHead         = "drop-head"
	OverflowRejectPublish    = "reject-publish"
	OverflowRejectPublishDLX = "reject-publish-dlx"
)

// queueConfig is a queue's effective configuration: its x- arguments,
// completed by the policy that applies to it (arguments win, as RabbitMQ).
type queueConfig struct {
	queueType       string        // x-queue-type: QueueTypeClassic or QueueTypeQuorum
	messageTTL      time.Duration // < 0: none
	expires         time.Duration // 0: never
	maxLength       int64         // < 0: none
	maxBytes        int64         // < 0: none
	overflow        string
	dlx             string
	hasDLX          bool
	dlrk            string
	hasDLRK         bool
	maxPriority     uint8
	singleActive    bool
	deliveryLimit   int64         // < 0: none
	noDeliveryLimit bool          // set to -1: no limit, not even a queue type's default
	consumerTimeout time.Duration // 0: none
	// Streams (stream_args.go): retention by age (0: none) and the size
	// at which a segment rolls (0: the stream log's default).
	maxAge       time.Duration
	segmentBytes int64
}

// knownQueueArgs are the arguments Herald interprets; other x- arguments
// are stored and ignored, as RabbitMQ does.
var knownQueueArgs = map[string]bool{
	"x-message-ttl": true, "x-expires": true, "x-max-length": true, "x-max-length-bytes": true,
	"x-overflow": true, "x-dead-letter-exchange": true, "x-dead-letter-routing-key": true,
	"x-max-priority": true, "x-single-active-consumer": true, "x-delivery-limit": true,
	"x-consumer-timeout": true, "x-queue-type": true, "x-queue-mode": true,
	"x-max-age": true, "x-stream-max-segment-size-bytes": true, "x-stream-filter-size-bytes": true,
	"x-initial-cluster-size": true, "x-queue-leader-locator": true,
}

// validateQueueArgs checks the arguments Herald knows and returns the
// configuration they describe; an invalid value is a 406 naming it.
func validateQueueArgs(args Table) (queueConfig, error) {
	cfg := queueConfig{queueType: QueueTypeClassic, messageTTL: -1, maxLength: -1, maxBytes: -1, deliveryLimit: -1, overflow: OverflowDropHead}
	for k, v := range args {
		if err := applyQueueSetting(&cfg, k, v, "arg"); err != nil {
			return cfg, err
		}
	}
	return cfg.withKindDefaults(), nil
}

// applyQueueSetting sets one argument (x-message-ttl) or policy key
// (message-ttl) on cfg.
func applyQueueSetting(cfg *queueConfig, key string, v any, kind string) error {
	bad := func(why string) error {
		return errorf(CodePreconditionFailed, "invalid %s '%s': %v %s", kind, key, v, why)
	}
	nonNegInt := func() (int64, error) {
		n, ok := asInt(v)
		if !ok {
			return 0, bad("is not an integer")
		}
		if n < 0 {
			return 0, bad("is negative")
		}
		return n, nil
	}
	str := func() (string, error) {
		switch s := v.(type) {
		case string:
			return s, nil
		case []byte:
			return string(s), nil
		}
		return "", bad("is not a string")
	}
	var err error
	var n int64
	switch key {
	case "x-message-ttl", "message-ttl":
		if n, err = nonNegInt(); err == nil {
			cfg.messageTTL = time.Duration(n) * time.Millisecond
		}
	case "x-expires", "expires":
		if n, err = nonNegInt(); err == nil {
			if n == 0 {
				return bad("must be positive")
			}
			cfg.expires = time.Duration(n) * time.Millisecond
		}
	case "x-max-length", "max-length":
		cfg.maxLength, err = nonNegInt()
	case "x-max-length-bytes", "max-length-bytes":
		cfg.maxBytes, err = nonNegInt()
	case "x-delivery-limit", "delivery-limit":
		// -1 turns the limit off, a quorum queue's default included (RabbitMQ 4).
		if n, ok := asInt(v); ok && n == -1 {
			cfg.deliveryLimit, cfg.noDeliveryLimit = -1, true
			return nil
		}
		cfg.deliveryLimit, err = nonNegInt()
		cfg.noDeliveryLimit = false
	case "x-consumer-timeout", "consumer-timeout":
		if n, err = nonNegInt(); err == nil {
			cfg.consumerTimeout = time.Duration(n) * time.Millisecond
		}
	case "x-max-priority":
		if n, err = nonNegInt(); err == nil {
			if n > 255 {
				return bad("is above 255")
			}
			cfg.maxPriority = uint8(n)
		}
	case "x-overflow", "overflow":
		var s string
		if s, err = str(); err == nil {
			switch s {
			case OverflowDropHead, OverflowRejectPublish, OverflowRejectPublishDLX:
				cfg.overflow = s
			default:
				return bad("is not one of drop-head, reject-publish, reject-publish-dlx")
			}
		}
	case "x-dead-letter-exchange", "dead-letter-exchange":
		cfg.dlx, err = str()
		cfg.hasDLX = err == nil
	case "x-dead-letter-routing-key", "dead-letter-routing-key":
		cfg.dlrk, err = str()
		cfg.hasDLRK = err == nil
	case "x-single-active-consumer":
		b, ok := v.(bool)
		if !ok {
			return bad("is not a boolean")
		}
		cfg.singleActive = b
	case "x-queue-type":
		s, _ := str()
		switch s {
		case QueueTypeClassic, QueueTypeQuorum, QueueTypeStream:
			cfg.queueType = s
		default:
			return errorf(CodePreconditionFailed, "invalid arg 'x-queue-type': '%v' is not supported (use 'classic', 'quorum' or 'stream')", v)
		}
	case "x-max-age", "max-age", "x-stream-max-segment-size-bytes", "stream-max-segment-size-bytes":
		return applyStreamSetting(cfg, key, v, bad)
	}
	return err
}

// effectiveConfig merges a policy's definition under the queue's own
// arguments: an argument always wins over a policy.
func effectiveConfig(args Table, p *Policy) queueConfig {
	cfg, _ := validateQueueArgs(nil)
	if p != nil {
		for k, v := range p.Definition {
			_ = applyQueueSetting(&cfg, k, v, "policy key")
		}
	}
	for k, v := range args {
		_ = applyQueueSetting(&cfg, k, v, "arg")
	}
	return cfg.withKindDefaults()
}

// withKindDefaults fills in what the queue type defaults and neither an
// argument nor a policy set.
func (cfg queueConfig) withKindDefaults() queueConfig {
	if cfg.queueType == QueueTypeQuorum && cfg.deliveryLimit < 0 && !cfg.noDeliveryLimit {
		cfg.deliveryLimit = DefaultQuorumDeliveryLimit
	}
	return cfg
}

// queueConfig is the effective configuration with the broker's defaults.
func (v *VHost) queueConfig(args Table, p *Policy) queueConfig {
	cfg := effectiveConfig(args, p)
	if cfg.consumerTimeout == 0 {
		cfg.consumerTimeout = v.broker.consumerTimeout
	}
	return cfg
}

// unknownArgs lists x- arguments Herald stores but does not interpret.
func unknownArgs(args Table) []string {
	var out []string
	for k := range args {
		if len(k) > 2 && k[:2] == "x-" && !knownQueueArgs[k] {
			out = append(out, k)
		}
	}
	return out
}
