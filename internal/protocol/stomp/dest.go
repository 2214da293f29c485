package stomp

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/stomp/frame"
)

// destKind is a destination type, as RabbitMQ's STOMP plugin names them.
type destKind uint8

const (
	destQueue      destKind = iota + 1 // /queue/x: queue x, declared if missing
	destTopic                          // /topic/k: amq.topic, key k
	destExchange                       // /exchange/e[/k]: exchange e, key k
	destAMQQueue                       // /amq/queue/x: an existing queue x
	destTempQueue                      // /temp-queue/x: a private reply queue
	destReplyQueue                     // /reply-queue/x: the real name of someone's temp queue
)

// topicExchange carries /topic/ destinations.
const topicExchange = "amq.topic"

type destination struct {
	kind destKind
	name string // queue or exchange name (temp-queue: the client's name)
	key  string // routing key
}

// parseDestination reads a destination header value.
func parseDestination(s string) (destination, error) {
	cut := func(prefix string) (string, bool) {
		if rest, ok := strings.CutPrefix(s, prefix); ok && rest != "" {
			return rest, true
		}
		return "", false
	}
	if x, ok := cut("/queue/"); ok {
		return destination{kind: destQueue, name: x, key: x}, nil
	}
	if k, ok := cut("/topic/"); ok {
		return destination{kind: destTopic, name: topicExchange, key: k}, nil
	}
	if rest, ok := cut("/exchange/"); ok {
		e, k, _ := strings.Cut(rest, "/")
		if e != "" {
			return destination{kind: destExchange, name: e, key: k}, nil
		}
	}
	if x, ok := cut("/amq/queue/"); ok {
		return destination{kind: destAMQQueue, name: x, key: x}, nil
	}
	if x, ok := cut("/temp-queue/"); ok {
		return destination{kind: destTempQueue, name: x}, nil
	}
	if x, ok := cut("/reply-queue/"); ok {
		return destination{kind: destReplyQueue, name: x, key: x}, nil
	}
	return destination{}, &protoError{
		message: "Unknown destination",
		detail:  fmt.Sprintf("'%s' is not a valid destination.\nValid destination types are: /exchange/, /topic/, /queue/, /amq/queue/, /temp-queue/, /reply-queue/.", s),
	}
}

// reportedDestination is the destination a MESSAGE names, derived from
// where the message was published, as RabbitMQ reports it.
func reportedDestination(m *broker.Message) string {
	switch m.Exchange {
	case "":
		return "/queue/" + m.RoutingKey
	case topicExchange:
		return "/topic/" + m.RoutingKey
	}
	if m.RoutingKey == "" {
		return "/exchange/" + m.Exchange
	}
	return "/exchange/" + m.Exchange + "/" + m.RoutingKey
}

// stompOnly are SEND headers that steer the frame and are not message
// headers.
var stompOnly = map[string]bool{
	"destination": true, "transaction": true, "receipt": true, "content-length": true,
	"content-type": true, "content-encoding": true, "correlation-id": true, "reply-to": true,
	"expiration": true, "priority": true, "persistent": true, "message-id": true,
	"amqp-message-id": true, "type": true, "app-id": true, "timestamp": true, "user-id": true,
	"cluster-id": true,
}

// sendProperties maps SEND headers to message properties as RabbitMQ's
// plugin does: the standard ones to AMQP properties, the rest to headers.
func sendProperties(f *frame.Frame) (broker.Properties, error) {
	var p broker.Properties
	seen := make(map[string]bool, len(f.Headers))
	for _, h := range f.Headers {
		if seen[h.Key] {
			continue // the first of repeated headers wins
		}
		seen[h.Key] = true
		switch h.Key {
		case "content-type":
			p.ContentType = h.Value
		case "content-encoding":
			p.ContentEncoding = h.Value
		case "correlation-id":
			p.CorrelationID = h.Value
		case "reply-to":
			p.ReplyTo = h.Value
		case "expiration":
			p.Expiration = h.Value
		case "message-id", "amqp-message-id":
			p.MessageID = h.Value
		case "type":
			p.Type = h.Value
		case "app-id":
			p.AppID = h.Value
		case "cluster-id":
			p.ClusterID = h.Value
		case "persistent":
			if h.Value == "true" {
				p.DeliveryMode = 2
			}
		case "priority":
			n, err := strconv.ParseUint(h.Value, 10, 8)
			if err != nil {
				return p, &protoError{message: "Invalid header", detail: fmt.Sprintf("priority must be an integer 0-255, got '%s'", h.Value)}
			}
			p.Priority = uint8(n)
		case "timestamp":
			n, err := strconv.ParseInt(h.Value, 10, 64)
			if err != nil {
				return p, &protoError{message: "Invalid header", detail: fmt.Sprintf("timestamp must be an integer (seconds since the epoch), got '%s'", h.Value)}
			}
			p.Timestamp = time.Unix(n, 0)
		default:
			if stompOnly[h.Key] {
				continue
			}
			if p.Headers == nil {
				p.Headers = make(broker.Table)
			}
			p.Headers[h.Key] = h.Value
		}
	}
	return p, nil
}

// messageHeaders appends the MESSAGE headers for d.
func messageHeaders(hs []frame.Header, s *subscription, d broker.Delivery, tag uint64, v frame.Version) []frame.Header {
	m := d.Message
	p := &m.Properties
	id := messageID(s.id, tag)
	hs = append(hs,
		frame.Header{Key: "subscription", Value: s.id},
		frame.Header{Key: "destination", Value: reportedDestination(m)},
		frame.Header{Key: "message-id", Value: id},
		frame.Header{Key: "redelivered", Value: strconv.FormatBool(d.Redelivered)},
	)
	if v >= frame.V12 && s.ack != ackAuto {
		hs = append(hs, frame.Header{Key: "ack", Value: id})
	}
	add := func(k, val string) {
		if val != "" {
			hs = append(hs, frame.Header{Key: k, Value: val})
		}
	}
	add("content-type", p.ContentType)
	add("content-encoding", p.ContentEncoding)
	add("correlation-id", p.CorrelationID)
	if p.ReplyTo != "" {
		r := p.ReplyTo
		if !strings.HasPrefix(r, "/") {
			// A bare queue name (an AMQP reply_to, or a rewritten
			// temp-queue): a STOMP client answers it via /reply-queue/.
			r = "/reply-queue/" + r
		}
		hs = append(hs, frame.Header{Key: "reply-to", Value: r})
	}
	add("expiration", p.Expiration)
	add("amqp-message-id", p.MessageID)
	add("type", p.Type)
	add("app-id", p.AppID)
	add("user-id", p.UserID)
	add("cluster-id", p.ClusterID)
	if p.Priority > 0 {
		hs = append(hs, frame.Header{Key: "priority", Value: strconv.Itoa(int(p.Priority))})
	}
	if p.DeliveryMode == 2 {
		hs = append(hs, frame.Header{Key: "persistent", Value: "true"})
	}
	if !p.Timestamp.IsZero() {
		hs = append(hs, frame.Header{Key: "timestamp", Value: strconv.FormatInt(p.Timestamp.Unix(), 10)})
	}
	for k, val := range p.Headers {
		if stompOnly[k] || k == "subscription" || k == "ack" || k == "redelivered" {
			continue // never let a header spoof the frame's own
		}
		if arr, ok := val.([]any); ok {
			// An array of plain values (an MQTT 5 user property that
			// repeats, say) is the header repeated, in order; a STOMP 1.2
			// reader that keeps only one keeps the first. Arrays of tables
			// (x-death) have no STOMP form.
			for _, e := range arr {
				if s, ok := headerString(e); ok {
					hs = append(hs, frame.Header{Key: k, Value: s})
				}
			}
			continue
		}
		if s, ok := headerString(val); ok {
			hs = append(hs, frame.Header{Key: k, Value: s})
		}
	}
	return hs
}

// headerString renders an AMQP header value; tables have no STOMP form
// and are left out, as RabbitMQ does.
func headerString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	case bool:
		return strconv.FormatBool(x), true
	case int8, int16, int32, int64, int, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), true
	case float32, float64:
		return fmt.Sprint(x), true
	case time.Time:
		return strconv.FormatInt(x.Unix(), 10), true
	}
	return "", false
}
