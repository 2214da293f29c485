package rpc

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/heraldmq/herald/pkg/rpc/internal/amqpc"
)

// The wire convention (docs/rpc.md describes it for other languages).
const (
	// QueuePrefix: instances of service S consume the queue "rpc.S".
	QueuePrefix = "rpc."
	// DirectReplyTo is RabbitMQ's pseudo-queue for replies without a
	// reply queue of one's own.
	DirectReplyTo = "amq.rabbitmq.reply-to"

	// Request header: the deadline as Unix milliseconds.
	HeaderDeadline = "x-deadline"
	// Reply headers: the status name and, when not OK, a message.
	HeaderStatus = "x-rpc-status"
	HeaderError  = "x-rpc-error"

	// basic.consume arguments an instance announces itself with.
	ArgServiceName        = "x-service-name"
	ArgServiceVersion     = "x-service-version"
	ArgServiceID          = "x-service-id"
	ArgServiceDescription = "x-service-description"
	ArgServiceEndpoints   = "x-service-endpoints"
	ArgServiceMetadata    = "x-service-metadata"
)

// QueueName is the queue the instances of service consume.
func QueueName(service string) string { return QueuePrefix + service }

// SplitType splits a request's type "S.M" at its last dot: a service
// name may contain dots, a method name may not.
func SplitType(typ string) (service, method string, ok bool) {
	i := strings.LastIndexByte(typ, '.')
	if i <= 0 || i == len(typ)-1 {
		return "", "", false
	}
	return typ[:i], typ[i+1:], true
}

var (
	errNoReplyTo   = errors.New("request has no reply_to")
	errNoType      = errors.New("request has no type (service.method)")
	errBadType     = errors.New("request type is not service.method")
	errBadDeadline = errors.New("x-deadline is not Unix milliseconds")
)

// request is what a server reads from a delivery before it decodes the
// body: everything the convention puts in the properties.
type request struct {
	service, method string
	replyTo         string
	correlationID   string
	contentType     string
	// deadline is zero when the caller set none.
	deadline time.Time
}

// parseRequest reads a delivery's properties. An error means no reply is
// possible or meaningful (no reply_to, no type): the server logs and
// drops it. A bad x-deadline is reported with the rest parsed, so the
// server can answer INVALID_ARGUMENT.
func parseRequest(d *amqpc.Delivery) (request, error) {
	r := request{replyTo: d.ReplyTo, correlationID: d.CorrelationId, contentType: d.ContentType}
	if d.ReplyTo == "" {
		return r, errNoReplyTo
	}
	if d.Type == "" {
		return r, errNoType
	}
	var ok bool
	if r.service, r.method, ok = SplitType(d.Type); !ok {
		return r, errBadType
	}
	if ms, ok := d.HeaderLong(HeaderDeadline); ok { // the SDK's own, unboxed
		r.deadline = time.UnixMilli(ms)
	} else if v, present := d.Header(HeaderDeadline); present {
		ms, ok := tableInt(v)
		if !ok {
			return r, errBadDeadline
		}
		r.deadline = time.UnixMilli(ms)
	}
	return r, nil
}

// tableInt reads an integer header whichever AMQP field type the sender
// chose: amqp091-go sends int64, amqplib picks by magnitude (and may send
// a double), pika sends a long long; a decimal string is accepted too.
func tableInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case int16:
		return int64(n), true
	case int8:
		return int64(n), true
	case int:
		return int64(n), true
	case uint8:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint32:
		return int64(n), true
	case uint64:
		if n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case float64:
		if n != math.Trunc(n) || n > math.MaxInt64 || n < math.MinInt64 {
			return 0, false
		}
		return int64(n), true
	case float32:
		return tableInt(float64(n))
	case string:
		i, err := strconv.ParseInt(n, 10, 64)
		return i, err == nil
	case []byte:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	}
	return 0, false
}

// tableString reads a string header sent as a long string or byte array.
func tableString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	}
	return ""
}

// parseReply reads a reply's status. A reply without x-rpc-status is OK:
// a responder that answers at all but ignores the status convention
// should still work for the success path.
func parseReply(d *amqpc.Delivery) (Code, string) {
	if d.HeaderIsText(HeaderStatus, "OK") {
		return OK, "" // the common case, without copying the header out
	}
	st, _ := d.Header(HeaderStatus)
	name := tableString(st)
	code, ok := ParseCode(name)
	e, _ := d.Header(HeaderError)
	msg := tableString(e)
	if !ok && msg == "" {
		msg = "unknown status " + strconv.Quote(name)
	}
	return code, msg
}

// expiration is a request's per-message TTL: the milliseconds left until
// its deadline, at least 1 (0 would mean "deliver now or drop", which a
// queued request must not be subjected to before the deadline).
func expiration(deadline, now time.Time) string {
	return strconv.FormatInt(expirationMs(deadline, now), 10)
}

func expirationMs(deadline, now time.Time) int64 {
	return max(deadline.Sub(now).Milliseconds(), 1)
}
