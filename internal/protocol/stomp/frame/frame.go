// Package frame is Herald's STOMP 1.0/1.1/1.2 codec: commands, headers
// (with the 1.1 and 1.2 escaping rules), content-length and NUL-terminated
// bodies, and heart-beat EOLs. It uses only the standard library and bounds
// every read before it allocates: the frame, each header line, the number of
// headers and the body each have a configurable limit.
package frame

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Version is a STOMP protocol version.
type Version uint8

// The versions Herald speaks.
const (
	V10 Version = iota + 1
	V11
	V12
)

// String is the version as it appears in accept-version and version headers.
func (v Version) String() string {
	switch v {
	case V10:
		return "1.0"
	case V11:
		return "1.1"
	case V12:
		return "1.2"
	}
	return "unknown"
}

// ParseVersion parses "1.0", "1.1" or "1.2".
func ParseVersion(s string) (Version, bool) {
	switch s {
	case "1.0":
		return V10, true
	case "1.1":
		return V11, true
	case "1.2":
		return V12, true
	}
	return 0, false
}

// Client and server commands.
const (
	CONNECT     = "CONNECT"
	STOMP       = "STOMP"
	CONNECTED   = "CONNECTED"
	SEND        = "SEND"
	SUBSCRIBE   = "SUBSCRIBE"
	UNSUBSCRIBE = "UNSUBSCRIBE"
	ACK         = "ACK"
	NACK        = "NACK"
	BEGIN       = "BEGIN"
	COMMIT      = "COMMIT"
	ABORT       = "ABORT"
	DISCONNECT  = "DISCONNECT"
	MESSAGE     = "MESSAGE"
	RECEIPT     = "RECEIPT"
	ERROR       = "ERROR"
)

// Header is one header line. Frames keep headers in wire order because
// STOMP says the first of repeated headers wins.
type Header struct {
	Key, Value string
}

// Frame is one STOMP frame.
type Frame struct {
	Command string
	Headers []Header
	Body    []byte
}

// Get returns the first value of header key.
func (f *Frame) Get(key string) (string, bool) {
	for _, h := range f.Headers {
		if h.Key == key {
			return h.Value, true
		}
	}
	return "", false
}

// Value returns the first value of header key, or "".
func (f *Frame) Value(key string) string {
	v, _ := f.Get(key)
	return v
}

// Add appends a header.
func (f *Frame) Add(key, value string) { f.Headers = append(f.Headers, Header{key, value}) }

// Errors returned by the reader. They are values so that the connection can
// tell the client precisely what was wrong in its ERROR frame.
var (
	ErrFrameTooLarge   = errors.New("frame too large")
	ErrHeaderTooLong   = errors.New("header line too long")
	ErrTooManyHeaders  = errors.New("too many headers")
	ErrBodyTooLarge    = errors.New("body too large")
	ErrBadCommand      = errors.New("invalid command")
	ErrBadHeader       = errors.New("invalid header line")
	ErrBadEscape       = errors.New("invalid escape sequence in header")
	ErrBadLength       = errors.New("invalid content-length")
	ErrMissingNUL      = errors.New("frame body not terminated by NUL")
	ErrUnknownCommand  = errors.New("unknown command")
	errCommandTooShort = errors.New("empty command")
)

// knownCommands are the commands either side may send.
var knownCommands = map[string]bool{
	CONNECT: true, STOMP: true, CONNECTED: true, SEND: true, SUBSCRIBE: true,
	UNSUBSCRIBE: true, ACK: true, NACK: true, BEGIN: true, COMMIT: true,
	ABORT: true, DISCONNECT: true, MESSAGE: true, RECEIPT: true, ERROR: true,
}

// escapes reports whether headers of command are escaped in version v:
// 1.0 has no escaping, and CONNECT/CONNECTED are never escaped so that
// version negotiation works before a version is agreed.
func escapes(v Version, command string) bool {
	return v >= V11 && command != CONNECT && command != CONNECTED && command != STOMP
}

// unescape decodes a 1.1/1.2 header value. 1.1 has no \r escape.
func unescape(s string, v Version) (string, error) {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return "", ErrBadEscape
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'c':
			b.WriteByte(':')
		case '\\':
			b.WriteByte('\\')
		case 'r':
			if v < V12 {
				return "", ErrBadEscape
			}
			b.WriteByte('\r')
		default:
			return "", ErrBadEscape // the spec makes undefined escapes fatal
		}
	}
	return b.String(), nil
}

// appendEscaped appends s escaped for version v.
func appendEscaped(dst []byte, s string, v Version) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case ':':
			dst = append(dst, '\\', 'c')
		case '\r':
			if v >= V12 {
				dst = append(dst, '\\', 'r')
			} else {
				dst = append(dst, c)
			}
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// appendRaw appends an unescaped value, dropping the bytes that would break
// the frame (an unescaped CONNECTED header cannot carry them).
func appendRaw(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\n' && c != '\r' && c != 0 {
			dst = append(dst, c)
		}
	}
	return dst
}

// Append encodes f for version v onto dst. A content-length header is
// always written (so bodies may contain NUL) unless f already has one.
func Append(dst []byte, f *Frame, v Version) []byte {
	dst = append(dst, f.Command...)
	dst = append(dst, '\n')
	esc := escapes(v, f.Command)
	hasLength := false
	for _, h := range f.Headers {
		if h.Key == "content-length" {
			hasLength = true
		}
		if esc {
			dst = appendEscaped(dst, h.Key, v)
			dst = append(dst, ':')
			dst = appendEscaped(dst, h.Value, v)
		} else {
			dst = appendRaw(dst, strings.ReplaceAll(h.Key, ":", ""))
			dst = append(dst, ':')
			dst = appendRaw(dst, h.Value)
		}
		dst = append(dst, '\n')
	}
	if !hasLength && (len(f.Body) > 0 || f.Command == MESSAGE || f.Command == ERROR) {
		dst = append(dst, "content-length:"...)
		dst = strconv.AppendInt(dst, int64(len(f.Body)), 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	dst = append(dst, f.Body...)
	return append(dst, 0)
}

// String renders the frame for logs and test failures.
func (f *Frame) String() string {
	return fmt.Sprintf("%s %v (%d bytes)", f.Command, f.Headers, len(f.Body))
}
