package wsconn

import (
	"errors"
	"fmt"
)

// CloseError is what a read returns once the peer's close frame arrived
// (the handshake is then complete and the connection closed).
type CloseError struct {
	Code   StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed by the peer: status %d %q", e.Code, e.Reason)
}

// ViolationError is what a read returns when the peer broke the protocol
// (or a limit): the connection was closed with Code.
type ViolationError struct {
	Code   StatusCode
	Reason string
}

func (e *ViolationError) Error() string {
	return fmt.Sprintf("websocket protocol violation (closed with %d): %s", e.Code, e.Reason)
}

func violation(code StatusCode, reason string) error {
	return &ViolationError{Code: code, Reason: reason}
}

// ErrClosed is returned by writes after the close handshake began.
var ErrClosed = errors.New("websocket: connection closed")

// CloseStatus is the status code of the peer's close frame that ended
// err's connection, or -1 when err is no CloseError.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}
