package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/heraldmq/herald/internal/broker"
)

// jsonProps are message properties in the JSON shape of RabbitMQ's
// management API (and of the /ws protocol).
type jsonProps struct {
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

// toBroker converts decoded JSON properties; header values become the Go
// types of the AMQP codec (integers int64, other numbers float64).
func (p *jsonProps) toBroker() (broker.Properties, error) {
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
		t, err := tableFromJSON(p.Headers)
		if err != nil {
			return bp, err
		}
		bp.Headers = t
	}
	return bp, nil
}

// maxTableDepth bounds the nesting of header tables, as the AMQP codec does.
const maxTableDepth = 32

func tableFromJSON(m map[string]any) (broker.Table, error) { return tableDepth(m, 0) }

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

// propsToJSON converts message properties for an answer; headers whose
// values JSON cannot carry (NaN, infinities) become strings.
func propsToJSON(p *broker.Properties) jsonProps {
	jp := jsonProps{
		ContentType: p.ContentType, ContentEncoding: p.ContentEncoding,
		DeliveryMode: p.DeliveryMode, Priority: p.Priority,
		CorrelationID: p.CorrelationID, ReplyTo: p.ReplyTo, Expiration: p.Expiration,
		MessageID: p.MessageID, Type: p.Type, UserID: p.UserID, AppID: p.AppID, ClusterID: p.ClusterID,
	}
	if !p.Timestamp.IsZero() {
		jp.Timestamp = p.Timestamp.Unix()
	}
	if len(p.Headers) > 0 {
		jp.Headers = tableToJSON(p.Headers)
	}
	return jp
}

func tableToJSON(t broker.Table) map[string]any {
	out := make(map[string]any, len(t))
	for k, v := range t {
		out[k] = valueToJSON(v)
	}
	return out
}

func valueToJSON(v any) any {
	switch v := v.(type) {
	case broker.Table:
		return tableToJSON(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = valueToJSON(x)
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

// encodeBody renders a body as a JSON string: text as is, anything else
// in base64, reporting which ("string" or "base64").
func encodeBody(b []byte, forceBase64 bool) (string, string) {
	if !forceBase64 && utf8.Valid(b) {
		return string(b), "string"
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// decodeBody turns a JSON payload back into bytes.
func decodePayload(s, encoding string) ([]byte, error) {
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
