package streamlog

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrBadArgument is wrapped by the parsers' errors; the broker answers it
// with 406 PRECONDITION_FAILED naming the argument.
var ErrBadArgument = errors.New("streamlog: bad argument")

// maxAgeUnits are RabbitMQ's x-max-age units (rabbit_amqqueue's
// check_max_age): a year is 365 days and a month 30.
var maxAgeUnits = map[byte]time.Duration{
	'Y': 365 * 24 * time.Hour,
	'M': 30 * 24 * time.Hour,
	'D': 24 * time.Hour,
	'h': time.Hour,
	'm': time.Minute,
	's': time.Second,
}

// ParseMaxAge parses an x-max-age value as RabbitMQ does: a positive
// decimal integer followed by exactly one unit of Y, M, D, h, m or s (so
// "7D", "12h", "30s"). Signs, spaces, fractions, zero, several units and
// durations beyond time.Duration's range are errors naming the value.
func ParseMaxAge(v string) (time.Duration, error) {
	bad := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("%w: x-max-age %q: %s", ErrBadArgument, v, why)
	}
	if len(v) < 2 {
		return bad("want a number and a unit (Y, M, D, h, m or s), e.g. 7D")
	}
	unit, ok := maxAgeUnits[v[len(v)-1]]
	if !ok {
		return bad("unknown unit; want one of Y, M, D, h, m, s")
	}
	digits := v[:len(v)-1]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return bad("want a number and a unit (Y, M, D, h, m or s), e.g. 7D")
		}
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > uint64(math.MaxInt64/int64(unit)) {
		return bad("too large")
	}
	if n == 0 {
		return bad("must be greater than zero")
	}
	return time.Duration(n) * unit, nil
}

// ParseOffsetSpec parses an x-stream-offset consume argument given as a
// string: "first", "last", "next", a non-negative decimal offset, or an
// interval in x-max-age's form ("1h", "30m", "7D") meaning that long
// before now. (A long or an AMQP timestamp argument the broker maps to
// AtOffset and AtTime itself.)
func ParseOffsetSpec(v string, now time.Time) (Position, error) {
	switch v {
	case "first":
		return First(), nil
	case "last":
		return Last(), nil
	case "next":
		return Next(), nil
	}
	if v != "" && v[0] >= '0' && v[0] <= '9' && strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return Position{}, fmt.Errorf("%w: x-stream-offset %q: offset too large", ErrBadArgument, v)
		}
		return AtOffset(n), nil
	}
	d, err := ParseMaxAge(v)
	if err != nil {
		return Position{}, fmt.Errorf("%w: x-stream-offset %q: want first, last, next, an offset or an interval such as 1h",
			ErrBadArgument, v)
	}
	return AtTime(now.Add(-d)), nil
}

// ParseSTOMPOffset parses RabbitMQ STOMP's x-stream-offset header: "first",
// "last", "next", "offset=N" or "timestamp=T" (T in seconds since the
// epoch).
func ParseSTOMPOffset(v string) (Position, error) {
	switch v {
	case "first":
		return First(), nil
	case "last":
		return Last(), nil
	case "next":
		return Next(), nil
	}
	key, val, ok := strings.Cut(v, "=")
	digits := ok && val != "" && strings.Trim(val, "0123456789") == ""
	switch {
	case key == "offset" && digits:
		n, err := strconv.ParseUint(val, 10, 64)
		if err == nil {
			return AtOffset(n), nil
		}
	case key == "timestamp" && digits:
		n, err := strconv.ParseInt(val, 10, 64)
		if err == nil && n <= math.MaxInt64/int64(time.Second) {
			return AtTime(time.Unix(n, 0)), nil
		}
	}
	return Position{}, fmt.Errorf("%w: x-stream-offset %q: want first, last, next, offset=N or timestamp=T (seconds)",
		ErrBadArgument, v)
}
