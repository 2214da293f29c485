// Package frame is a pure AMQP 0-9-1 wire codec: frames, methods, content
// headers and field tables. It does no I/O beyond the Reader and Writer
// wrappers and knows nothing about connections or channels.
//
// A connection starts with the 8-byte protocol header sent by the client:
//
//	'A' 'M' 'Q' 'P' 0x00 0x00 0x09 0x01
//
// after which both peers exchange frames:
//
//	0      1         3             7                  7+size   8+size
//	+------+---------+-------------+--------  ...  ---+--------+
//	| type | channel | size        | payload          | 0xCE   |
//	+------+---------+-------------+--------  ...  ---+--------+
//	 octet   short     long          size octets        frame-end
//
// Integers are big-endian. The frame types are method (1), content header
// (2), content body (3) and heartbeat (8). A frame's total length
// (size + 8) must not exceed the negotiated frame-max.
//
// A method frame payload is
//
//	+----------+-----------+----------------------+
//	| class-id | method-id | arguments ...        |
//	+----------+-----------+----------------------+
//	  short      short
//
// where consecutive bit arguments are packed into octets (least significant
// bit first). A content header frame payload is
//
//	+----------+--------+-----------+----------------+---------------+
//	| class-id | weight | body-size | property-flags | property-list |
//	+----------+--------+-----------+----------------+---------------+
//	  short      short    longlong    short...
//
// where flag bit 15 is the first property and bit 0 set means another flags
// word follows. The body is sent in zero or more body frames whose payloads
// add up to body-size.
//
// The method structs (ConnectionStart ... ConfirmSelectOk), the reply-code
// and class-id constants and Properties are generated from
// spec/amqp0-9-1.xml by ./gen into methods_gen.go. Method values are used as
// pointers: DecodeMethod returns e.g. a *BasicPublish, and only pointer types
// implement Method.
//
// Encoding errors. Method.encode cannot fail, so encoders never produce
// malformed output: a shortstr longer than 255 bytes is truncated, and a
// field table value of an unsupported type (or nested deeper than
// MaxTableDepth, or with a key longer than 255 bytes) is skipped. The first
// such problem is recorded; Writer.WriteMethod and Writer.WriteContent
// return it (wrapping ErrInvalidValue) and write nothing. AppendMethod and
// AppendContentHeader have no error result; use ValidateTable first if
// tables come from untrusted code.
package frame

//go:generate go run ./gen -spec spec/amqp0-9-1.xml -out methods_gen.go

import (
	"errors"
	"fmt"
	"io"
)

// Frame types and sizes (spec constants frame-*).
const (
	TypeMethod    = 1
	TypeHeader    = 2
	TypeBody      = 3
	TypeHeartbeat = 8
	End           = 0xCE // frame-end octet
	MinSize       = 4096 // frame-min-size

	// HeaderSize is the length of the frame header (type, channel, size).
	HeaderSize = 7
	// Overhead is the number of bytes a frame adds to its payload.
	Overhead = HeaderSize + 1
)

// ProtocolHeader is the AMQP 0-9-1 protocol header.
var ProtocolHeader = [8]byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// Errors. They are returned wrapped with detail; compare with errors.Is.
var (
	ErrBadProtocolHeader = errors.New("frame: bad protocol header")
	ErrFrameTooLarge     = errors.New("frame: frame too large")
	ErrBadFrameEnd       = errors.New("frame: bad frame end octet")
	ErrUnknownFrameType  = errors.New("frame: unknown frame type")
	ErrUnknownMethod     = errors.New("frame: unknown method")
	ErrSyntax            = errors.New("frame: syntax error")
	ErrInvalidValue      = errors.New("frame: invalid value")
)

// ReadProtocolHeader reads exactly 8 bytes from r and checks that they are
// ProtocolHeader. A mismatch returns an error wrapping ErrBadProtocolHeader
// that quotes the received bytes; a short read returns the I/O error
// (io.EOF or io.ErrUnexpectedEOF).
func ReadProtocolHeader(r io.Reader) error {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	if b != ProtocolHeader {
		return fmt.Errorf("%w: got %q", ErrBadProtocolHeader, b[:])
	}
	return nil
}

// Frame is one frame read by Reader.ReadFrame.
type Frame struct {
	Type    uint8
	Channel uint16
	Payload []byte // valid only until the next ReadFrame
}

// Method is implemented by one generated struct per spec method (by the
// pointer type, e.g. *BasicPublish).
type Method interface {
	ClassID() uint16
	MethodID() uint16
	Name() string      // e.g. "basic.publish"
	HasContent() bool  // content="1" in the spec
	Synchronous() bool // synchronous="1" in the spec
	decode(r *decoder) error
	encode(w *encoder)
}

// DecodeMethod decodes a method frame payload. An unknown class or method
// returns an error wrapping ErrUnknownMethod; truncated or malformed
// arguments, or trailing bytes, return an error wrapping ErrSyntax.
// Strings and tables are copied: the result does not alias payload.
func DecodeMethod(payload []byte) (Method, error) { return DecodeMethodMemo(payload, nil) }

// DecodeMethodMemo is DecodeMethod sharing unchanged short strings with
// the previous method decoded with the same memo (nil: none). The hot
// methods of a connection's read loop, basic.publish and basic.ack, are
// decoded into the memo's own structs: such a result is valid only until
// the next call with the memo, and the caller must not keep it.
func DecodeMethodMemo(payload []byte, memo *Memo) (Method, error) {
	if len(payload) < 4 {
		return nil, fmt.Errorf("%w: method frame payload of %d bytes", ErrSyntax, len(payload))
	}
	classID := uint16(payload[0])<<8 | uint16(payload[1])
	methodID := uint16(payload[2])<<8 | uint16(payload[3])
	var m Method
	var d *decoder
	if memo != nil {
		memo.next = 0
		if classID == ClassBasic {
			switch methodID {
			case 40:
				memo.publish = BasicPublish{}
				m = &memo.publish
			case 80:
				memo.ack = BasicAck{}
				m = &memo.ack
			}
		}
		// The memo's decoder: one on the stack would escape through the
		// interface call below, an allocation per frame.
		memo.d = decoder{buf: payload, off: 4, memo: memo}
		d = &memo.d
	} else {
		d = &decoder{buf: payload, off: 4}
	}
	if m == nil {
		m = newMethod(classID, methodID)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: class %d method %d", ErrUnknownMethod, classID, methodID)
	}
	if err := m.decode(d); err != nil {
		return nil, fmt.Errorf("%s: %w", m.Name(), err)
	}
	if d.off != len(payload) {
		return nil, fmt.Errorf("%w: %s: %d trailing bytes", ErrSyntax, m.Name(), len(payload)-d.off)
	}
	return m, nil
}

// AppendMethod appends the class id, method id and arguments of m to b (a
// method frame payload) and returns the extended slice. See the package
// documentation for how invalid values are handled.
func AppendMethod(b []byte, m Method) []byte {
	e := encoder{buf: b}
	e.method(m)
	return e.buf
}

func (e *encoder) method(m Method) {
	e.short(m.ClassID())
	e.short(m.MethodID())
	m.encode(e)
}
