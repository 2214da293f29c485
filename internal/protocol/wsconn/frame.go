package wsconn

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Opcode is a frame's opcode (RFC 6455 5.2).
type Opcode byte

// The opcodes RFC 6455 defines; the others are reserved and refused.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

func (o Opcode) control() bool { return o&0x8 != 0 }

// StatusCode is a close frame's status code (RFC 6455 7.4).
type StatusCode int

// The status codes Herald sends or reports.
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	// StatusNoStatusRcvd is reported for a close frame without a code; it
	// is never sent.
	StatusNoStatusRcvd        StatusCode = 1005
	StatusInvalidFramePayload StatusCode = 1007
	StatusPolicyViolation     StatusCode = 1008
	StatusMessageTooBig       StatusCode = 1009
	StatusInternalError       StatusCode = 1011
	StatusTryAgainLater       StatusCode = 1013
	maxControlPayload                    = 125
	maxHeaderLen                         = 14 // 2 + 8 (64-bit length) + 4 (mask)
	maxCloseReason                       = maxControlPayload - 2
)

// validWireCode reports whether a peer may send code in a close frame
// (RFC 6455 7.4.1/7.4.2: 1004-1006 and 1015 are reserved, 1016-2999 are
// for future revisions, 3000-4999 are for libraries and applications).
func validWireCode(code StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// header is a parsed frame header.
type header struct {
	fin    bool
	rsv    byte // the three RSV bits; no extension is negotiated, so 0
	op     Opcode
	masked bool
	length int64
	mask   [4]byte
}

// parseHeader parses the frame header at the start of b. n is its size;
// n == 0 (and no error) means b holds only part of it. It checks what is
// wrong whoever sent the frame; the Conn checks what a server must
// refuse from a client (an unmasked frame, a length above its limit).
func parseHeader(b []byte) (h header, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = Opcode(b[0] & 0xF)
	h.masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return header{}, 0, nil
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return header{}, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return h, 0, violation(StatusProtocolError, "frame length has its most significant bit set")
		}
		h.length = int64(u)
		n = 10
	default:
		h.length = int64(l)
	}
	if h.masked {
		if len(b) < n+4 {
			return header{}, 0, nil
		}
		copy(h.mask[:], b[n:n+4])
		n += 4
	}
	switch h.op {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
	default:
		return h, 0, violation(StatusProtocolError, fmt.Sprintf("reserved opcode %#x", byte(h.op)))
	}
	if h.rsv != 0 {
		return h, 0, violation(StatusProtocolError, "RSV bits set without a negotiated extension")
	}
	if h.op.control() && (!h.fin || h.length > maxControlPayload) {
		return h, 0, violation(StatusProtocolError, "control frame fragmented or longer than 125 bytes")
	}
	return h, n, nil
}

// appendHeader appends an unmasked (server) frame header.
func appendHeader(b []byte, fin bool, op Opcode, length int) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	switch {
	case length <= 125:
		return append(b, b0, byte(length))
	case length <= 0xFFFF:
		return append(b, b0, 126, byte(length>>8), byte(length))
	default:
		b = append(b, b0, 127)
		return binary.BigEndian.AppendUint64(b, uint64(length))
	}
}

// maskBytes XORs b with the mask starting at position pos of the key and
// returns the position after b.
func maskBytes(key [4]byte, pos int, b []byte) int {
	if len(b) >= 16 {
		// Word at a time once aligned to the key.
		for pos&3 != 0 && len(b) > 0 {
			b[0] ^= key[pos&3]
			b = b[1:]
			pos++
		}
		k32 := uint64(binary.LittleEndian.Uint32(key[:]))
		k64 := k32 | k32<<32
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

// closePayload encodes a close frame's payload; the reason is cut to fit
// a control frame.
func closePayload(code StatusCode, reason string) []byte {
	reason = truncateUTF8(reason, maxCloseReason)
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, reason...)
}

// parseClose decodes a peer's close frame payload.
func parseClose(p []byte) (StatusCode, string, error) {
	switch {
	case len(p) == 0:
		return StatusNoStatusRcvd, "", nil
	case len(p) == 1:
		return 0, "", violation(StatusProtocolError, "close frame with a one-byte payload")
	}
	code := StatusCode(binary.BigEndian.Uint16(p))
	if !validWireCode(code) {
		return 0, "", violation(StatusProtocolError, fmt.Sprintf("close code %d is not allowed on the wire", code))
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", violation(StatusInvalidFramePayload, "close reason is not UTF-8")
	}
	return code, string(p[2:]), nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
