package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/web/jsonmsg"
)

// wsFrame is a client frame of the /ws protocol (see the package doc).
type wsFrame struct {
	Op       string     `json:"op"`
	ID       flexString `json:"id"`
	Queue    string     `json:"queue"`
	Stream   string     `json:"stream"`
	Offset   any        `json:"offset"` // a stream subscription's start (streams.go)
	Exchange *string    `json:"exchange"`
	Key      string     `json:"key"`
	Ack      string     `json:"ack"`
	Prefetch int        `json:"prefetch"`
	Tag      uint64     `json:"tag"`
	Requeue  *bool      `json:"requeue"`
	// publish
	Body       string         `json:"body"`
	Encoding   string         `json:"encoding"`
	Properties jsonmsg.Props  `json:"properties"`
	Headers    map[string]any `json:"headers"`
	ReplyTo    string         `json:"reply_to"`
	Confirm    bool           `json:"confirm"`
	// realtime (realtime.go, presence.go, usermessages.go)
	Presence  bool            `json:"presence"`
	JoinLeave bool            `json:"join_leave"`
	Info      json.RawMessage `json:"info"`
	Channel   string          `json:"channel"`
	To        string          `json:"to"`
	Token     string          `json:"token"`
}

// flexString is an id: a JSON string or number, kept as text so that it
// can be echoed back.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if string(b) == "null" {
		return nil
	}
	if _, err := strconv.ParseFloat(string(b), 64); err != nil {
		return fmt.Errorf("id must be a string or a number, not %s", b)
	}
	*f = flexString(b)
	return nil
}

// maxIDLen bounds ids, which the server keeps (subscriptions) and echoes.
const maxIDLen = 256

// parseFrame decodes and validates one client frame.
func parseFrame(b []byte) (*wsFrame, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	f := &wsFrame{}
	if err := dec.Decode(f); err != nil {
		return nil, fmt.Errorf("invalid JSON frame: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("invalid JSON frame: trailing data")
	}
	if len(f.ID) > maxIDLen {
		return nil, fmt.Errorf("id longer than %d bytes", maxIDLen)
	}
	switch f.Op {
	case "subscribe":
		if f.ID == "" {
			return nil, fmt.Errorf("subscribe needs an id")
		}
		given := 0
		for _, b := range []bool{f.Queue != "", f.Stream != "", f.Exchange != nil} {
			if b {
				given++
			}
		}
		if given != 1 {
			return nil, fmt.Errorf("subscribe needs one of queue, stream or exchange (with key)")
		}
		if f.Ack != "" && f.Ack != "auto" && f.Ack != "client" {
			return nil, fmt.Errorf("ack must be auto or client, not %q", f.Ack)
		}
		if f.Prefetch < 0 {
			return nil, fmt.Errorf("prefetch must not be negative")
		}
		if err := f.checkPresenceFields(); err != nil {
			return nil, err
		}
	case "unsubscribe":
		if f.ID == "" {
			return nil, fmt.Errorf("unsubscribe needs an id")
		}
	case "ack", "nack", "touch":
		if f.Tag == 0 {
			return nil, fmt.Errorf("%s needs a tag", f.Op)
		}
	case "publish":
		if f.Encoding != "" && f.Encoding != "string" && f.Encoding != "base64" {
			return nil, fmt.Errorf("encoding must be string or base64, not %q", f.Encoding)
		}
	case "reply_address", "ping":
	default:
		if err := f.checkRealtime(); err != nil {
			return nil, err
		}
	case "":
		return nil, fmt.Errorf("frame has no op")
	}
	return f, nil
}

// message builds the broker message of a publish frame.
func (f *wsFrame) message() (*broker.Message, error) {
	body, err := jsonmsg.DecodePayload(f.Body, f.Encoding)
	if err != nil {
		return nil, err
	}
	props := f.Properties
	if len(f.Headers) > 0 {
		if props.Headers == nil {
			props.Headers = map[string]any{}
		}
		for k, v := range f.Headers {
			props.Headers[k] = v
		}
	}
	if f.ReplyTo != "" {
		props.ReplyTo = f.ReplyTo
	}
	bp, err := props.ToBroker()
	if err != nil {
		return nil, err
	}
	ex := ""
	if f.Exchange != nil {
		ex = exchangeName(*f.Exchange)
	}
	return &broker.Message{Exchange: ex, RoutingKey: f.Key, Properties: bp, Body: body}, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only values built here are marshalled, and jsonmsg.TableToJSON removes
		// what JSON cannot carry; fail loudly in a frame rather than panic.
		b, _ = json.Marshal(map[string]any{"op": "error", "code": 500, "message": "cannot encode frame: " + err.Error()})
	}
	return b
}
