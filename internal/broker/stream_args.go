package broker

import (
	"errors"
	"strings"
	"time"

	"github.com/heraldmq/herald/internal/streamlog"
)

// Declaration and consume arguments of streams, as RabbitMQ 3.13+/4
// answers them:
//
//   - a stream is durable, never exclusive or auto-delete (406);
//   - its arguments are x-max-length-bytes, x-max-age ("7D", "12h"),
//     x-stream-max-segment-size-bytes (at most 3 GB),
//     x-stream-filter-size-bytes (16..255), x-initial-cluster-size and
//     x-queue-leader-locator; the last three are validated or accepted
//     and have no effect on one node (Herald's filters match exact
//     values, it keeps no Bloom filter);
//   - the arguments of the other queue types (x-max-priority,
//     x-message-ttl, x-dead-letter-*, x-overflow, x-max-length,
//     x-single-active-consumer, x-expires, x-delivery-limit, x-queue-mode,
//     x-consumer-timeout, ...) are refused with 406, as RabbitMQ 3.13+
//     does (3.10 to 3.12 ignored them silently);
//   - other x- arguments are stored and ignored, as on any queue.

// maxStreamSegmentBytes is RabbitMQ's ceiling for
// x-stream-max-segment-size-bytes.
const maxStreamSegmentBytes = 3_000_000_000

// streamRefusedArgs are the arguments of the other queue types.
var streamRefusedArgs = []string{
	"x-max-priority", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
	"x-overflow", "x-max-length", "x-single-active-consumer", "x-expires", "x-delivery-limit",
	"x-queue-mode", "x-queue-version", "x-consumer-timeout", "x-max-in-memory-length",
	"x-max-in-memory-bytes", "x-dead-letter-strategy", "x-quorum-initial-group-size",
}

// applyStreamSetting sets a stream-only argument or policy key on cfg.
func applyStreamSetting(cfg *queueConfig, key string, v any, bad func(string) error) error {
	switch key {
	case "x-max-age", "max-age":
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case []byte:
			s = string(x)
		default:
			return bad("is not a string such as 7D, 12h or 30s")
		}
		d, err := streamlog.ParseMaxAge(s)
		if err != nil {
			return bad("is not an age such as 7D, 12h or 30s (units Y M D h m s)")
		}
		cfg.maxAge = d
	case "x-stream-max-segment-size-bytes", "stream-max-segment-size-bytes":
		n, ok := asInt(v)
		switch {
		case !ok:
			return bad("is not an integer")
		case n <= 0:
			return bad("must be positive")
		case n > maxStreamSegmentBytes:
			return bad("exceeds the maximum of 3000000000")
		}
		cfg.segmentBytes = n
	}
	return nil
}

// checkStreamDeclare refuses what a stream cannot be (406, as RabbitMQ).
func checkStreamDeclare(name, vhost string, o QueueOptions) error {
	bad := func(what string) error {
		return errorf(CodePreconditionFailed, "invalid property '%s' for queue '%s' in vhost '%s'", what, name, vhost)
	}
	switch {
	case !o.Durable:
		return bad("non-durable")
	case o.Exclusive:
		return bad("exclusive-owner")
	case o.AutoDelete:
		return bad("auto-delete")
	}
	for _, k := range streamRefusedArgs {
		if _, ok := o.Args[k]; ok {
			return errorf(CodePreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type stream", k, name, vhost)
		}
	}
	if v, ok := o.Args["x-stream-filter-size-bytes"]; ok {
		if n, isInt := asInt(v); !isInt || n < 16 || n > 255 {
			return errorf(CodePreconditionFailed, "invalid arg 'x-stream-filter-size-bytes' for queue '%s' in vhost '%s': %v is not an integer from 16 to 255", name, vhost, v)
		}
	}
	return nil
}

// streamConsumeSpec is what a consumer's arguments ask of a stream.
type streamConsumeSpec struct {
	start    streamlog.Position
	hasStart bool   // x-stream-offset was given
	name     string // x-stream-consumer: "" = anonymous
	filters  []string
	// matchUnfiltered: with filters, also deliver messages that carry no
	// x-stream-filter-value.
	matchUnfiltered bool
}

// maxStreamConsumerName bounds x-stream-consumer (the stream log stores
// names of up to 255 bytes, RabbitMQ's reference length).
const maxStreamConsumerName = 255

// parseStreamConsumeArgs reads x-stream-offset, x-stream-consumer,
// x-stream-filter and x-stream-match-unfiltered. A malformed value is a
// 406 naming the argument (RabbitMQ 3.10 closes the connection with 541
// for some of them).
func parseStreamConsumeArgs(args Table, now time.Time) (streamConsumeSpec, error) {
	var s streamConsumeSpec
	bad := func(arg string, v any, why string) error {
		return errorf(CodePreconditionFailed, "invalid arg '%s': %v %s", arg, v, why)
	}
	if v, ok := args["x-stream-offset"]; ok {
		p, err := streamOffsetArg(v, now)
		if err != nil {
			return s, bad("x-stream-offset", v, "is not first, last, next, an offset, a timestamp or an interval such as 1h")
		}
		s.start, s.hasStart = p, true
	}
	if v, ok := args["x-stream-consumer"]; ok {
		name, isStr := tableString(v)
		if !isStr || name == "" || len(name) > maxStreamConsumerName {
			return s, bad("x-stream-consumer", v, "is not a name of 1 to 255 bytes")
		}
		s.name = name
	}
	if v, ok := args["x-stream-filter"]; ok {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				f, isStr := tableString(e)
				if !isStr {
					return s, bad("x-stream-filter", v, "is not a string or an array of strings")
				}
				s.filters = append(s.filters, f)
			}
		default:
			f, isStr := tableString(v)
			if !isStr {
				return s, bad("x-stream-filter", v, "is not a string or an array of strings")
			}
			s.filters = []string{f}
		}
		if len(s.filters) == 0 {
			return s, bad("x-stream-filter", v, "is an empty array")
		}
	}
	if v, ok := args["x-stream-match-unfiltered"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return s, bad("x-stream-match-unfiltered", v, "is not a boolean")
		}
		s.matchUnfiltered = b
	}
	return s, nil
}

var errNegativeOffset = errors.New("negative offset")

// streamOffsetArg maps an x-stream-offset value: a string (first, last,
// next, an offset in decimal, an interval), an integer offset (not
// negative) or an AMQP timestamp.
func streamOffsetArg(v any, now time.Time) (streamlog.Position, error) {
	if s, ok := tableString(v); ok {
		return streamlog.ParseOffsetSpec(s, now)
	}
	if t, ok := v.(time.Time); ok {
		return streamlog.AtTime(t), nil
	}
	n, ok := asInt(v)
	if !ok {
		return streamlog.Position{}, streamlog.ErrBadArgument
	}
	if n < 0 {
		return streamlog.Position{}, errNegativeOffset
	}
	if u, isU := v.(uint64); isU {
		return streamlog.AtOffset(u), nil
	}
	return streamlog.AtOffset(uint64(n)), nil
}

func tableString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

// matches reports whether a message with filter value fv (has: it carries
// one) passes the consumer's filters.
func (s *streamConsumeSpec) matches(m *Message) bool {
	if len(s.filters) == 0 {
		return true
	}
	fv, has := tableString(m.Properties.Headers["x-stream-filter-value"])
	if !has {
		return s.matchUnfiltered
	}
	for _, f := range s.filters {
		if f == fv {
			return true
		}
	}
	return false
}

// StreamArgsFromSTOMP maps the stream headers of a STOMP SUBSCRIBE, in
// RabbitMQ STOMP's forms, to consume arguments: x-stream-offset ("first",
// "last", "next", "offset=N", "timestamp=T" in seconds), x-stream-consumer,
// x-stream-filter (comma-separated values) and x-stream-match-unfiltered
// ("true"/"false"). get returns a header's value and whether it is there.
// A malformed value is a 406 naming the header.
func StreamArgsFromSTOMP(get func(string) (string, bool)) (Table, error) {
	args := Table{}
	if v, ok := get("x-stream-offset"); ok {
		p, err := streamlog.ParseSTOMPOffset(v)
		if err != nil {
			return nil, errorf(CodePreconditionFailed, "invalid header 'x-stream-offset': '%s' is not first, last, next, offset=N or timestamp=T", v)
		}
		switch p.Kind {
		case streamlog.PosFirst:
			args["x-stream-offset"] = "first"
		case streamlog.PosLast:
			args["x-stream-offset"] = "last"
		case streamlog.PosNext:
			args["x-stream-offset"] = "next"
		case streamlog.PosTime:
			args["x-stream-offset"] = p.Time
		default:
			if p.Offset > 1<<63-1 {
				return nil, errorf(CodePreconditionFailed, "invalid header 'x-stream-offset': '%s' is out of range", v)
			}
			args["x-stream-offset"] = int64(p.Offset)
		}
	}
	if v, ok := get("x-stream-consumer"); ok {
		args["x-stream-consumer"] = v
	}
	if v, ok := get("x-stream-filter"); ok {
		var fs []any
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fs = append(fs, f)
			}
		}
		args["x-stream-filter"] = fs
	}
	if v, ok := get("x-stream-match-unfiltered"); ok {
		switch v {
		case "true":
			args["x-stream-match-unfiltered"] = true
		case "false":
			args["x-stream-match-unfiltered"] = false
		default:
			return nil, errorf(CodePreconditionFailed, "invalid header 'x-stream-match-unfiltered': '%s' is not true or false", v)
		}
	}
	return args, nil
}
