package frame

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// decoder reads AMQP primitives from buf. Errors are sticky: after the
// first error every read returns a zero value and err stays set, so
// generated code can read all fields and check err once.
type decoder struct {
	buf   []byte
	off   int
	err   error
	depth int // current table/array nesting depth
	memo  *Memo
	// memoTable: a top-level table may be memo's (content headers only:
	// method arguments such as queue.declare's may be kept and changed).
	memoTable bool
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", ErrSyntax, fmt.Sprintf(format, args...), d.off)
	}
	d.off = len(d.buf)
}

// need reports whether n more bytes are available, failing otherwise.
func (d *decoder) need(n int, what string) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.buf)-d.off < n {
		d.fail("truncated %s (need %d bytes, have %d)", what, n, len(d.buf)-d.off)
		return false
	}
	return true
}

func (d *decoder) octet() uint8 {
	if !d.need(1, "octet") {
		return 0
	}
	v := d.buf[d.off]
	d.off++
	return v
}

func (d *decoder) short() uint16 {
	if !d.need(2, "short") {
		return 0
	}
	v := binary.BigEndian.Uint16(d.buf[d.off:])
	d.off += 2
	return v
}

func (d *decoder) long() uint32 {
	if !d.need(4, "long") {
		return 0
	}
	v := binary.BigEndian.Uint32(d.buf[d.off:])
	d.off += 4
	return v
}

func (d *decoder) longlong() uint64 {
	if !d.need(8, "longlong") {
		return 0
	}
	v := binary.BigEndian.Uint64(d.buf[d.off:])
	d.off += 8
	return v
}

// bytes returns the next n bytes without copying.
func (d *decoder) bytes(n int, what string) []byte {
	if !d.need(n, what) {
		return nil
	}
	b := d.buf[d.off : d.off+n : d.off+n]
	d.off += n
	return b
}

func (d *decoder) shortstr() string {
	n := int(d.octet())
	b := d.bytes(n, "shortstr")
	if d.memo != nil && d.depth == 0 {
		return d.memo.str(b)
	}
	return string(b)
}

func (d *decoder) longstr() string {
	n := d.long()
	if d.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(d.buf)-d.off) {
		d.fail("truncated longstr (length %d, have %d)", n, len(d.buf)-d.off)
		return ""
	}
	return string(d.bytes(int(n), "longstr"))
}

// timestamp reads a 64-bit POSIX time in seconds, returned in UTC.
func (d *decoder) timestamp() time.Time {
	v := d.longlong()
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(int64(v), 0).UTC()
}

// encoder appends AMQP primitives to buf. It never fails mid-way: invalid
// values are truncated or skipped so the output stays well-formed, and the
// first problem is recorded in err (see the package documentation).
type encoder struct {
	buf   []byte
	err   error
	depth int
	keys  []string // scratch for sorting table keys, used as a stack

	// A Writer's encoder remembers the last content header's headers
	// table and its encoding: the deliveries of one publisher's messages
	// often share one table (Memo on the decoding side makes them share
	// it), and a published message's table is never changed in place.
	// Holding lastTable keeps its address from being reused by another.
	inHeader  bool
	lastTable Table
	lastEnc   []byte
}

func (e *encoder) reset(b []byte) {
	e.buf = b
	e.err = nil
	e.depth = 0
	clear(e.keys) // drop string references
	e.keys = e.keys[:0]
}

func (e *encoder) setErr(format string, args ...any) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: %s", ErrInvalidValue, fmt.Sprintf(format, args...))
	}
}

func (e *encoder) octet(v uint8)     { e.buf = append(e.buf, v) }
func (e *encoder) short(v uint16)    { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }
func (e *encoder) long(v uint32)     { e.buf = binary.BigEndian.AppendUint32(e.buf, v) }
func (e *encoder) longlong(v uint64) { e.buf = binary.BigEndian.AppendUint64(e.buf, v) }

// shortstr writes a short string; longer than 255 bytes is truncated (and
// recorded as an error).
func (e *encoder) shortstr(s string) {
	if len(s) > math.MaxUint8 {
		e.setErr("shortstr of %d bytes (max 255)", len(s))
		s = s[:math.MaxUint8]
	}
	e.buf = append(e.buf, uint8(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) longstr(s string) {
	if uint64(len(s)) > math.MaxUint32 {
		e.setErr("longstr of %d bytes (max 4294967295)", len(s))
		s = ""
	}
	e.long(uint32(len(s)))
	e.buf = append(e.buf, s...)
}

func (e *encoder) timestamp(t time.Time) { e.longlong(uint64(t.Unix())) }

// patchLong writes v as a long at offset off (a placeholder written earlier).
func (e *encoder) patchLong(off int, v uint32) {
	binary.BigEndian.PutUint32(e.buf[off:], v)
}
