// Package jsonmsg is the JSON shape of messages, properties and argument
// tables shared by the management API and the HTTP messaging endpoints
// (RabbitMQ's management API shapes: payload, payload_encoding,
// properties, headers).
package jsonmsg

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldmq/herald/internal/broker"
)

// Props are message properties in the JSON shape of RabbitMQ's
// management API (and of the /ws protocol).
type Props struct {
	ContentType     string         `json:"content_type,omitempty"`
	ContentEncoding string         `json:"content_encoding,omitempty"`
	Headers         map[string]any `json:"headers,omitempty"`
	DeliveryMode    uint8          `json:"delivery_mode,omitempty"`
	Priority        uint8          `json:"priority,omitempty"`
	CorrelationID   string         `json:"correlation_id,omitempty"`
	ReplyTo         string         `json:"reply_to,omitempty"`
	Expiration      string         `json:"expiration,omitempty"`
	MessageID       string         `json:"message_id,omitempty"`
	Timestamp       int64          `json:"timestamp,omitempty"` // seconds since the epoch
	Type            string         `json:"type,omitempty"`
	UserID          string         `json:"user_id,omitempty"`
	AppID           string         `json:"app_id,omitempty"`
	ClusterID       string         `json:"cluster_id,omitempty"`
}

// ToBroker converts decoded JSON properties; header values become the Go
// types of the AMQP codec (integers int64, other numbers float64).
func (p *Props) ToBroker() (broker.Properties, error) {
	bp := broker.Properties{
		ContentType: p.ContentType, ContentEncoding: p.ContentEncoding,
		DeliveryMode: p.DeliveryMode, Priority: p.Priority,
		CorrelationID: p.CorrelationID, ReplyTo: p.ReplyTo, Expiration: p.Expiration,
		MessageID: p.MessageID, Type: p.Type, UserID: p.UserID, AppID: p.AppID, ClusterID: p.ClusterID,
	}
	if p.Timestamp != 0 {
		bp.Timestamp = time.Unix(p.Timestamp, 0)
	}
	if p.DeliveryMode > 2 {
		return bp, fmt.Errorf("delivery_mode must be 1 or 2, not %d", p.DeliveryMode)
	}
	if len(p.Headers) > 0 {
		t, err := TableFromJSON(p.Headers)
		if err != nil {
			return bp, err
		}
		bp.Headers = t
	}
	return bp, nil
}

// maxTableDepth bounds the nesting of header tables, as the AMQP codec does.
const maxTableDepth = 32

func TableFromJSON(m map[string]any) (broker.Table, error) { return tableDepth(m, 0) }

func tableDepth(m map[string]any, depth int) (broker.Table, error) {
	if depth > maxTableDepth {
		return nil, fmt.Errorf("headers nested deeper than %d", maxTableDepth)
	}
	t := make(broker.Table, len(m))
	for k, v := range m {
		x, err := valueFromJSON(v, depth)
		if err != nil {
			return nil, fmt.Errorf("header %q: %w", k, err)
		}
		t[k] = x
	}
	return t, nil
}

func valueFromJSON(v any, depth int) (any, error) {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, err
		}
		return f, nil
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return int64(v), nil
		}
		return v, nil
	case map[string]any:
		return tableDepth(v, depth+1)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			y, err := valueFromJSON(x, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = y
		}
		return out, nil
	case string, bool, nil:
		return v, nil
	}
	return nil, fmt.Errorf("unsupported JSON value %T", v)
}

// PropsToJSON converts message properties for an answer; headers whose
// values JSON cannot carry (NaN, infinities) become strings.
func PropsToJSON(p *broker.Properties) Props {
	jp := Props{
		ContentType: p.ContentType, ContentEncoding: p.ContentEncoding,
		DeliveryMode: p.DeliveryMode, Priority: p.Priority,
		CorrelationID: p.CorrelationID, ReplyTo: p.ReplyTo, Expiration: p.Expiration,
		MessageID: p.MessageID, Type: p.Type, UserID: p.UserID, AppID: p.AppID, ClusterID: p.ClusterID,
	}
	if !p.Timestamp.IsZero() {
		jp.Timestamp = p.Timestamp.Unix()
	}
	if len(p.Headers) > 0 {
		jp.Headers = TableToJSON(p.Headers)
	}
	return jp
}

func TableToJSON(t broker.Table) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = ValueToJSON(v)
	}
	return out
}

func ValueToJSON(v any) any {
	switch v := v.(type) {
	case broker.Table:
		return TableToJSON(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = ValueToJSON(x)
		}
		return out
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Sprint(v)
		}
	case float32:
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Sprint(v)
		}
	case []byte:
		// Byte arrays read best as text when they are text.
		if utf8.Valid(v) {
			return string(v)
		}
		return base64.StdEncoding.EncodeToString(v)
	case time.Time:
		return v.Unix()
	}
	return v
}

// EncodeBody renders a body as a JSON string: text as is, anything else
// in base64, reporting which ("string" or "base64").
func EncodeBody(b []byte, forceBase64 bool) (string, string) {
	if !forceBase64 && utf8.Valid(b) {
		return string(b), "string"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// decodeBody turns a JSON payload back into bytes.
func DecodePayload(s, encoding string) ([]byte, error) {
	switch encoding {
	case "", "string":
		return []byte(s), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("payload is not valid base64: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("payload_encoding must be \"string\" or \"base64\", not %q", encoding)
}

// FlexInt accepts a JSON number or a numeric string: rabbitmqadmin sends
// "count": "5".
type FlexInt int

func (f *FlexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%s is not an integer", b)
	}
	*f = FlexInt(n)
	return nil
}

// Got is one message of RabbitMQ's POST /api/queues/{vhost}/{queue}/get
// answer (and of the management API's peek).
type Got struct {
	PayloadBytes    int    `json:"payload_bytes"`
	Redelivered     bool   `json:"redelivered"`
	Exchange        string `json:"exchange"`
	RoutingKey      string `json:"routing_key"`
	MessageCount    int    `json:"message_count"`
	Properties      Props  `json:"properties"`
	Payload         string `json:"payload"`
	PayloadEncoding string `json:"payload_encoding"`
}
