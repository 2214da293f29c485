package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// Code is an RPC status. The values and their names are gRPC's
// (google.golang.org/grpc/codes), so a status means the same thing on
// both sides of a gateway; on the wire the name travels in the reply's
// x-rpc-status header.
type Code uint32

// The gRPC status codes.
const (
	OK                 Code = 0
	Canceled           Code = 1
	Unknown            Code = 2
	InvalidArgument    Code = 3
	DeadlineExceeded   Code = 4
	NotFound           Code = 5
	AlreadyExists      Code = 6
	PermissionDenied   Code = 7
	ResourceExhausted  Code = 8
	FailedPrecondition Code = 9
	Aborted            Code = 10
	OutOfRange         Code = 11
	Unimplemented      Code = 12
	Internal           Code = 13
	Unavailable        Code = 14
	DataLoss           Code = 15
	Unauthenticated    Code = 16
)

var codeNames = [...]string{
	OK:                 "OK",
	Canceled:           "CANCELLED",
	Unknown:            "UNKNOWN",
	InvalidArgument:    "INVALID_ARGUMENT",
	DeadlineExceeded:   "DEADLINE_EXCEEDED",
	NotFound:           "NOT_FOUND",
	AlreadyExists:      "ALREADY_EXISTS",
	PermissionDenied:   "PERMISSION_DENIED",
	ResourceExhausted:  "RESOURCE_EXHAUSTED",
	FailedPrecondition: "FAILED_PRECONDITION",
	Aborted:            "ABORTED",
	OutOfRange:         "OUT_OF_RANGE",
	Unimplemented:      "UNIMPLEMENTED",
	Internal:           "INTERNAL",
	Unavailable:        "UNAVAILABLE",
	DataLoss:           "DATA_LOSS",
	Unauthenticated:    "UNAUTHENTICATED",
}

// String is the code's wire name, e.g. "INVALID_ARGUMENT".
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE(" + strconv.FormatUint(uint64(c), 10) + ")"
}

// ParseCode maps a wire name to its code. An empty name is OK (a
// responder that does not follow the convention but answered); a name it
// does not know is Unknown, with ok false.
func ParseCode(name string) (c Code, ok bool) {
	if name == "" {
		return OK, true
	}
	for i, n := range codeNames {
		if n == name {
			return Code(i), true
		}
	}
	// gRPC spells it both ways; accept the American one too.
	if name == "CANCELED" {
		return Canceled, true
	}
	return Unknown, false
}

// Sentinels that errors.Is recognises in the *Error a call returns.
var (
	// ErrNoResponders: no instance of the service was there to take the
	// request (the broker returned it: basic.return on a mandatory publish).
	ErrNoResponders = errors.New("rpc: no responders")
	// ErrDeadlineExceeded matches every *Error whose code is
	// DEADLINE_EXCEEDED, whether the caller gave up or the service said so.
	// Such an error also matches context.DeadlineExceeded.
	ErrDeadlineExceeded = errors.New("rpc: deadline exceeded")
	// ErrConnectionLost: the connection to the broker went away while the
	// call was in flight, or was down when it started (code UNAVAILABLE).
	ErrConnectionLost = errors.New("rpc: connection to the broker lost")
	// ErrCircuitOpen: the client's circuit breaker for the service is open
	// (or half-open and already probing); the call was not sent.
	ErrCircuitOpen = errors.New("rpc: circuit breaker open")
	// ErrRateLimited: the client's rate limit would not admit the call
	// before its deadline (code RESOURCE_EXHAUSTED); it was not sent.
	ErrRateLimited = errors.New("rpc: client rate limit")
	// ErrClosed: the client or server was closed.
	ErrClosed = errors.New("rpc: closed")
)

// Error is a failed call's status: the service's own (x-rpc-status and
// x-rpc-error of its reply) or one the SDK assigned (no responders,
// deadline, lost connection, breaker, rate limit).
type Error struct {
	Code    Code
	Message string
	// cause is a sentinel above or a context error; Unwrap exposes it.
	cause error
}

// Errorf builds the error a handler returns to answer with a status other
// than INTERNAL, e.g. rpc.Errorf(rpc.NotFound, "no user %q", id).
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func newError(code Code, cause error, msg string) *Error {
	return &Error{Code: code, Message: msg, cause: cause}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "rpc: " + e.Code.String()
	}
	return "rpc: " + e.Code.String() + ": " + e.Message
}

// Unwrap returns the sentinel or context error behind e, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is lets errors.Is(err, ErrDeadlineExceeded) and errors.Is(err,
// context.DeadlineExceeded) hold for every DEADLINE_EXCEEDED status,
// including one a service replied with.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrDeadlineExceeded, context.DeadlineExceeded:
		return e.Code == DeadlineExceeded
	}
	return false
}

// CodeOf is err's status: OK for nil, the code of an *Error in its chain,
// DEADLINE_EXCEEDED / CANCELLED for the context errors, UNKNOWN otherwise.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return Canceled
	}
	return Unknown
}
