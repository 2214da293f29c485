package amqp091

import (
	"errors"
	"fmt"

	"github.com/heraldmq/herald/internal/broker"
	"github.com/heraldmq/herald/internal/protocol/amqp091/frame"
)

// amqpError is a protocol exception: a channel error closes the channel, a
// connection error closes the connection.
type amqpError struct {
	code     uint16
	text     string
	classID  uint16
	methodID uint16
	conn     bool
}

func (e *amqpError) Error() string { return replyText(e.code, e.text) }

// replyText formats a reply text the way RabbitMQ does: "NOT_FOUND - no queue 'x' in vhost '/'".
func replyText(code uint16, text string) string {
	name := codeNames[code]
	if name == "" {
		return text
	}
	return name + " - " + text
}

var codeNames = map[uint16]string{
	frame.ReplySuccess:       "",
	frame.ContentTooLarge:    "CONTENT_TOO_LARGE",
	frame.NoRoute:            "NO_ROUTE",
	frame.NoConsumers:        "NO_CONSUMERS",
	frame.ConnectionForced:   "CONNECTION_FORCED",
	frame.InvalidPath:        "INVALID_PATH",
	frame.AccessRefused:      "ACCESS_REFUSED",
	frame.NotFound:           "NOT_FOUND",
	frame.ResourceLocked:     "RESOURCE_LOCKED",
	frame.PreconditionFailed: "PRECONDITION_FAILED",
	frame.FrameError:         "FRAME_ERROR",
	frame.SyntaxError:        "SYNTAX_ERROR",
	frame.CommandInvalid:     "COMMAND_INVALID",
	frame.ChannelError:       "CHANNEL_ERROR",
	frame.UnexpectedFrame:    "UNEXPECTED_FRAME",
	frame.ResourceError:      "RESOURCE_ERROR",
	frame.NotAllowed:         "NOT_ALLOWED",
	frame.NotImplemented:     "NOT_IMPLEMENTED",
	frame.InternalError:      "INTERNAL_ERROR",
}

func methodIDs(m frame.Method) (uint16, uint16) {
	if m == nil {
		return 0, 0
	}
	return m.ClassID(), m.MethodID()
}

func channelError(code uint16, m frame.Method, format string, args ...any) *amqpError {
	c, id := methodIDs(m)
	return &amqpError{code: code, text: fmt.Sprintf(format, args...), classID: c, methodID: id}
}

func connectionError(code uint16, m frame.Method, format string, args ...any) *amqpError {
	c, id := methodIDs(m)
	return &amqpError{code: code, text: fmt.Sprintf(format, args...), classID: c, methodID: id, conn: true}
}

// fromBroker maps a core error onto the AMQP exception RabbitMQ raises for it.
func fromBroker(err error, m frame.Method) *amqpError {
	var be *broker.Error
	if !errors.As(err, &be) {
		return connectionError(frame.InternalError, m, "%v", err)
	}
	c, id := methodIDs(m)
	e := &amqpError{code: uint16(be.Code), text: be.Text, classID: c, methodID: id}
	switch be.Code {
	case broker.CodeCommandInvalid, broker.CodeNotAllowed, broker.CodeNotImplemented, broker.CodeInternal:
		e.conn = true
	}
	return e
}
