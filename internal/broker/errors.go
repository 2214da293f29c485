package broker

import "fmt"

// Code classifies a broker error. The values are AMQP 0-9-1 reply codes,
// because RabbitMQ's codes are the vocabulary every other protocol adapter
// maps from (MQTT reason codes, STOMP ERROR frames, HTTP statuses).
type Code int

// Error codes used by the core.
const (
	CodeAccessRefused      Code = 403
	CodeNotFound           Code = 404
	CodeResourceLocked     Code = 405
	CodePreconditionFailed Code = 406
	CodeResourceError      Code = 506
	CodeCommandInvalid     Code = 503
	CodeNotAllowed         Code = 530
	CodeNotImplemented     Code = 540
	CodeInternal           Code = 541
)

// Error is a broker failure with a code and a message written for the user
// ("no queue 'orders' in vhost '/'").
type Error struct {
	Code Code
	Text string
}

func (e *Error) Error() string { return e.Text }

// Is lets errors.Is match on the code alone: errors.Is(err, ErrNotFound).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Text == ""
}

// Sentinels for errors.Is.
var (
	ErrAccessRefused      = &Error{Code: CodeAccessRefused}
	ErrNotFound           = &Error{Code: CodeNotFound}
	ErrResourceLocked     = &Error{Code: CodeResourceLocked}
	ErrPreconditionFailed = &Error{Code: CodePreconditionFailed}
	ErrCommandInvalid     = &Error{Code: CodeCommandInvalid}
	ErrNotAllowed         = &Error{Code: CodeNotAllowed}
)

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...)}
}
