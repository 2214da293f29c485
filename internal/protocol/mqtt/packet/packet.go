// Package packet is a pure codec for MQTT 3.1.1 and 5.0 control packets
// (stdlib only). Decoding validates everything the specifications make a
// "malformed packet" or "protocol error" and reports it as an *Error whose
// Code is the MQTT 5 reason code to answer with; spec clause ids are cited
// beside each check.
//
// The version matters to every packet after CONNECT (v5 adds properties and
// reason codes), so a connection decodes CONNECT first (it carries the
// protocol level) and passes the negotiated version to later calls.
package packet

import (
	"bufio"
	"errors"
	"io"
	"unicode/utf8"
)

// Protocol levels carried in CONNECT.
const (
	V31  byte = 3 // MQTT 3.1 ("MQIsdp")
	V311 byte = 4
	V5   byte = 5
)

// Control packet types (fixed header bits 7-4).
const (
	CONNECT     byte = 1
	CONNACK     byte = 2
	PUBLISH     byte = 3
	PUBACK      byte = 4
	PUBREC      byte = 5
	PUBREL      byte = 6
	PUBCOMP     byte = 7
	SUBSCRIBE   byte = 8
	SUBACK      byte = 9
	UNSUBSCRIBE byte = 10
	UNSUBACK    byte = 11
	PINGREQ     byte = 12
	PINGRESP    byte = 13
	DISCONNECT  byte = 14
	AUTH        byte = 15
)

// MaxRemainingLength is the largest value four varint bytes can carry
// [MQTT-1.5.5] / 3.1.1 section 2.2.3.
const MaxRemainingLength = 268435455

// Packet is any decoded control packet.
type Packet interface {
	// Type is the control packet type.
	Type() byte
	// Encode appends the whole packet (fixed header included) for version.
	Encode(dst []byte, version byte) []byte
}

// Read reads one packet from r. maxSize bounds the whole packet (fixed
// header included); it is checked BEFORE the body is allocated, so a peer
// cannot make us allocate more than maxSize. A CONNECT is decoded whatever
// version is passed (it carries its own); later packets use version.
func Read(r *bufio.Reader, version byte, maxSize int) (Packet, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, size, err := readVarint(r)
	if err != nil {
		return nil, err
	}
	if maxSize > 0 && 1+size+n > maxSize {
		return nil, errf(PacketTooLarge, "packet of %d bytes exceeds the maximum of %d", 1+size+n, maxSize)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return Decode(first, body, version)
}

// readVarint decodes a Variable Byte Integer (at most 4 bytes [MQTT-1.5.5-1])
// and returns its value and its encoded size.
func readVarint(r io.ByteReader) (value, size int, err error) {
	mult := 1
	for size < 4 {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && size > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, size, err
		}
		size++
		value += int(b&0x7f) * mult
		if b&0x80 == 0 {
			return value, size, nil
		}
		mult *= 128
	}
	return 0, size, errf(MalformedPacket, "variable byte integer longer than 4 bytes")
}

// Decode decodes the packet whose fixed header's first byte is first and
// whose variable header and payload are body.
func Decode(first byte, body []byte, version byte) (Packet, error) {
	typ, flags := first>>4, first&0x0f
	// Reserved flag bits [MQTT-2.1.3-1] (3.1.1: [MQTT-2.2.2-1]).
	switch typ {
	case PUBLISH:
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		if flags != 0x02 {
			return nil, errf(MalformedPacket, "packet type %d with flags %#x, want 0x2 [MQTT-3.6.1-1]", typ, flags)
		}
	default:
		if flags != 0 {
			return nil, errf(MalformedPacket, "packet type %d with reserved flags %#x [MQTT-2.1.3-1]", typ, flags)
		}
	}
	d := &decoder{buf: body}
	var p Packet
	switch typ {
	case CONNECT:
		p = decodeConnect(d)
	case CONNACK:
		p = decodeConnack(d, version)
	case PUBLISH:
		p = decodePublish(d, flags, version)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		p = decodeAck(d, typ, version)
	case SUBSCRIBE:
		p = decodeSubscribe(d, version)
	case SUBACK, UNSUBACK:
		p = decodeSuback(d, typ, version)
	case UNSUBSCRIBE:
		p = decodeUnsubscribe(d, version)
	case PINGREQ:
		p = &Pingreq{}
	case PINGRESP:
		p = &Pingresp{}
	case DISCONNECT:
		p = decodeDisconnect(d, version)
	case AUTH:
		if version != V5 {
			return nil, errf(ProtocolError, "AUTH packet in MQTT %d", version)
		}
		p = decodeAuth(d)
	default:
		return nil, errf(MalformedPacket, "reserved packet type %d [MQTT-2.1.2]", typ)
	}
	if d.err != nil {
		return p, d.err
	}
	if len(d.buf) > 0 {
		return nil, errf(MalformedPacket, "%d trailing bytes after packet type %d", len(d.buf), typ)
	}
	return p, nil
}

// decoder consumes a packet body; the first failure sticks in err and every
// later read returns zero values, so decode functions read straight through
// and check once.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.buf = nil
}

func (d *decoder) short(what string) {
	d.fail(errf(MalformedPacket, "packet too short for %s", what))
}

func (d *decoder) byte(what string) byte {
	if len(d.buf) < 1 {
		d.short(what)
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uint16(what string) uint16 {
	if len(d.buf) < 2 {
		d.short(what)
		return 0
	}
	v := uint16(d.buf[0])<<8 | uint16(d.buf[1])
	d.buf = d.buf[2:]
	return v
}

func (d *decoder) uint32(what string) uint32 {
	if len(d.buf) < 4 {
		d.short(what)
		return 0
	}
	v := uint32(d.buf[0])<<24 | uint32(d.buf[1])<<16 | uint32(d.buf[2])<<8 | uint32(d.buf[3])
	d.buf = d.buf[4:]
	return v
}

func (d *decoder) varint(what string) uint32 {
	var v, mult uint32 = 0, 1
	for i := 0; i < 4; i++ {
		b := d.byte(what)
		if d.err != nil {
			return 0
		}
		v += uint32(b&0x7f) * mult
		if b&0x80 == 0 {
			return v
		}
		mult *= 128
	}
	d.fail(errf(MalformedPacket, "%s: variable byte integer longer than 4 bytes [MQTT-1.5.5-1]", what))
	return 0
}

// binary reads two-byte-length-prefixed bytes; the result aliases the body,
// which the caller owns (Read allocates a fresh body per packet).
func (d *decoder) binary(what string) []byte {
	n := int(d.uint16(what))
	if d.err != nil {
		return nil
	}
	if len(d.buf) < n {
		d.short(what)
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// string reads a UTF-8 Encoded String: well-formed UTF-8 [MQTT-1.5.4-1]
// without U+0000 [MQTT-1.5.4-2].
func (d *decoder) string(what string) string {
	b := d.binary(what)
	if d.err != nil {
		return ""
	}
	if !validString(b) {
		d.fail(errf(MalformedPacket, "%s is not valid UTF-8 or contains U+0000 [MQTT-1.5.4-1]", what))
		return ""
	}
	return string(b)
}

func validString(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c == 0 {
			return false
		}
	}
	return true
}

// Encoding helpers. Packets are built into a scratch body first and then
// prefixed with the fixed header, which needs the body's length.

func appendUint16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendVarint(b []byte, v int) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}

func varintLen(v int) int {
	n := 1
	for v >= 128 {
		v >>= 7
		n++
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = appendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBinary(b []byte, s []byte) []byte {
	b = appendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// frame appends the fixed header for body and then body.
func frame(dst []byte, first byte, body []byte) []byte {
	dst = append(dst, first)
	dst = appendVarint(dst, len(body))
	return append(dst, body...)
}
