package mqtt

import (
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Headers the adapter puts on messages published over MQTT. They travel
// through the core (and reach AMQP consumers) because MQTT semantics need
// them at delivery time, as RabbitMQ's plugin does with x-mqtt-publish-qos.
const (
	hdrPublishQoS    = "x-mqtt-publish-qos"
	hdrRetain        = "x-mqtt-retain"         // set when published with RETAIN, for Retain As Published
	hdrPublisher     = "x-mqtt-publisher"      // client id of the publisher, for No Local
	hdrPayloadFormat = "x-mqtt-payload-format" // v5 Payload Format Indicator
	hdrResponseTopic = "x-mqtt-response-topic" // the v5 Response Topic as the requester wrote it
	topicExchange    = "amq.topic"
	sharePrefix      = "$share/"
)

// topicToKey maps an MQTT topic or filter onto an AMQP routing key or
// binding pattern, as RabbitMQ does: '/' <-> '.', '+' -> '*', '#' stays.
// '.' and '/' are swapped (not just replaced) so the mapping is reversible.
func topicToKey(t string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		case '+':
			return '*'
		}
		return r
	}, t)
}

// keyToTopic is the inverse of topicToKey.
func keyToTopic(k string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		case '*':
			return '+'
		}
		return r
	}, k)
}

// matchFilter reports whether topic matches an MQTT filter, including the
// rule that a wildcard at the first level does not match a topic starting
// with '$' [MQTT-4.7.2-1]. The core's amq.topic binding does not know that
// rule, so deliveries are checked again here.
func matchFilter(filter, topic string) bool {
	if filter == topic {
		return true // the common case, a filter without wildcards
	}
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true // '#' also matches the parent level [MQTT-4.7.1-2]
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore || !tmore {
			if !fmore && !tmore {
				return true
			}
			// "a/#" matches "a".
			return !tmore && fmore && frest == "#"
		}
		filter, topic = frest, trest
	}
}

// parseShare splits "$share/group/filter".
func parseShare(f string) (group, filter string, ok bool) {
	if !strings.HasPrefix(f, sharePrefix) {
		return "", f, false
	}
	group, filter, ok = strings.Cut(f[len(sharePrefix):], "/")
	return group, filter, ok && group != "" && !strings.ContainsAny(group, "+#") && filter != ""
}

// publishQoS is the QoS a message was published with. Messages from other
// protocols count as QoS 1 when persistent, else QoS 0 (RabbitMQ's rule).
func publishQoS(m *broker.Message) byte {
	if v, ok := m.Properties.Headers[hdrPublishQoS]; ok {
		if n, ok := toInt(v); ok && n >= 0 && n <= 2 {
			return byte(n)
		}
	}
	if m.Persistent() {
		return 1
	}
	return 0
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int8:
		return int64(x), true
	case int16:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	}
	return 0, false
}

// toMessage builds the core message for an inbound PUBLISH (topic already
// resolved from any alias). now stamps messages that carry an expiry, so the
// remaining lifetime can be computed at delivery.
func toMessage(p *packet.Publish, topic, clientID string, version byte, now time.Time) *broker.Message {
	h := broker.Table{hdrPublishQoS: p.QoS, hdrPublisher: clientID}
	if p.Retain {
		h[hdrRetain] = true
	}
	m := &broker.Message{Exchange: topicExchange, RoutingKey: topicToKey(topic), Body: p.Payload}
	if p.QoS > 0 {
		m.Properties.DeliveryMode = 2
	}
	if version == packet.V5 {
		pr := &p.Properties
		putUserProperties(h, pr.User) // order and repeats kept: userprops.go
		m.Properties.ContentType = pr.ContentType
		if pr.PayloadFormat != nil {
			h[hdrPayloadFormat] = *pr.PayloadFormat
		}
		if pr.MessageExpiry != nil {
			m.Properties.Expiration = strconv.FormatUint(uint64(*pr.MessageExpiry)*1000, 10)
			m.Properties.Timestamp = now
		}
		if pr.CorrelationData != nil {
			m.Properties.CorrelationID = string(pr.CorrelationData)
		}
		if pr.ResponseTopic != "" {
			h[hdrResponseTopic] = pr.ResponseTopic
			m.Properties.ReplyTo = topicToKey(pr.ResponseTopic)
		}
	}
	m.Properties.Headers = h
	return m
}

// remainingExpiry reports the message's remaining lifetime in seconds and
// whether it has expired. ok=false means it has no expiry.
func remainingExpiry(m *broker.Message, now time.Time) (secs uint32, expired, ok bool) {
	if m.Properties.Expiration == "" {
		return 0, false, false
	}
	ms, err := strconv.ParseUint(m.Properties.Expiration, 10, 63)
	if err != nil {
		return 0, false, false
	}
	if m.Properties.Timestamp.IsZero() {
		return uint32(min(ms/1000, 1<<32-1)), false, true
	}
	left := time.Duration(ms)*time.Millisecond - now.Sub(m.Properties.Timestamp)
	if left <= 0 {
		return 0, true, true
	}
	return uint32(min(uint64((left+time.Second-1)/time.Second), 1<<32-1)), false, true
}

// fillProperties sets the v5 PUBLISH properties of a delivery from the
// message: the reverse of toMessage.
func fillProperties(pr *packet.Properties, m *broker.Message, now time.Time) {
	pr.ContentType = m.Properties.ContentType
	if m.Properties.CorrelationID != "" {
		pr.CorrelationData = []byte(m.Properties.CorrelationID)
	}
	if s, _, ok := remainingExpiry(m, now); ok {
		pr.MessageExpiry = packet.Ptr(s)
	}
	if rt, ok := m.Properties.Headers[hdrResponseTopic].(string); ok {
		pr.ResponseTopic = rt
	} else if m.Properties.ReplyTo != "" {
		pr.ResponseTopic = keyToTopic(m.Properties.ReplyTo)
	}
	if v, ok := m.Properties.Headers[hdrPayloadFormat]; ok {
		if n, ok := toInt(v); ok && (n == 0 || n == 1) {
			pr.PayloadFormat = packet.Ptr(byte(n))
		}
	}
	pr.User = userProperties(m.Properties.Headers)
}
