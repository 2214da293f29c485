package frame

import (
	"math"
	"reflect"
	"slices"
	"time"
)

// Table is an AMQP field table. It is an alias, so any map[string]any is a
// Table.
//
// Decoded values have these Go types (type letters as used by RabbitMQ and
// amqp091-go; 'U' and 'L', the spec's letters for signed 16 and 64-bit
// integers, are accepted too):
//
//	't' bool     'b' int8     'B' uint8    's','U' int16  'u' uint16
//	'I' int32    'i' uint32   'l','L' int64 'f' float32   'd' float64
//	'D' Decimal  'S' string   'x' []byte   'A' []any      'T' time.Time (UTC)
//	'F' Table    'V' nil
//
// An empty table decodes as a nil Table; an empty array as a non-nil
// empty []any. Encoding accepts exactly those Go types plus int (sent as
// 'l'), choosing the letter by Go type, and sorts keys so the output is
// deterministic. Tables and arrays may nest at most MaxTableDepth deep.
type Table = map[string]any

// Decimal is an AMQP decimal value: Value / 10^Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// MaxTableDepth bounds the nesting of field tables and arrays (counting
// the outermost table as 1), when decoding and when encoding.
const MaxTableDepth = 64

// ValidateTable reports whether t can be encoded: every value has a
// supported type, every key is at most 255 bytes, nesting is at most
// MaxTableDepth. The error wraps ErrInvalidValue. Encoders silently skip
// the entries ValidateTable would complain about.
func ValidateTable(t Table) error {
	var e encoder
	e.table(t)
	return e.err
}

// table reads a field table. An empty table is nil.
func (d *decoder) table() Table {
	n := d.long()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.buf)-d.off) {
		d.fail("truncated field table (length %d, have %d)", n, len(d.buf)-d.off)
		return nil
	}
	if d.depth >= MaxTableDepth {
		d.fail("field tables nested deeper than %d", MaxTableDepth)
		return nil
	}
	if n == 0 {
		return nil
	}
	end := d.off + int(n)
	top := d.memoTable && d.memo != nil && d.depth == 0
	if top && d.memo.table != nil && string(d.buf[d.off:end]) == string(d.memo.raw) {
		d.off = end
		return d.memo.table
	}
	outer := d.buf
	d.buf = d.buf[:end]
	d.depth++
	t := make(Table)
	for d.off < end {
		k := d.shortstr()
		v := d.value()
		if d.err != nil {
			break
		}
		t[k] = v
	}
	d.depth--
	d.buf = outer
	if d.err != nil {
		d.off = len(d.buf)
		return nil
	}
	if top {
		d.memo.raw = append(d.memo.raw[:0], d.buf[end-int(n):end]...)
		d.memo.table = t
	}
	return t
}

// array reads a field array. An empty array is a non-nil empty slice.
func (d *decoder) array() []any {
	n := d.long()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.buf)-d.off) {
		d.fail("truncated field array (length %d, have %d)", n, len(d.buf)-d.off)
		return nil
	}
	if d.depth >= MaxTableDepth {
		d.fail("field arrays nested deeper than %d", MaxTableDepth)
		return nil
	}
	end := d.off + int(n)
	outer := d.buf
	d.buf = d.buf[:end]
	d.depth++
	a := make([]any, 0)
	for d.off < end {
		v := d.value()
		if d.err != nil {
			break
		}
		a = append(a, v)
	}
	d.depth--
	d.buf = outer
	if d.err != nil {
		d.off = len(d.buf)
		return nil
	}
	return a
}

// value reads one type letter and value.
func (d *decoder) value() any {
	t := d.octet()
	if d.err != nil {
		return nil
	}
	switch t {
	case 't':
		return d.octet() != 0
	case 'b':
		return int8(d.octet())
	case 'B':
		return d.octet()
	case 's', 'U':
		return int16(d.short())
	case 'u':
		return d.short()
	case 'I':
		return int32(d.long())
	case 'i':
		return d.long()
	case 'l', 'L':
		return int64(d.longlong())
	case 'f':
		return math.Float32frombits(d.long())
	case 'd':
		return math.Float64frombits(d.longlong())
	case 'D':
		scale := d.octet()
		return Decimal{Scale: scale, Value: int32(d.long())}
	case 'S':
		return d.longstr()
	case 'x':
		n := d.long()
		if d.err != nil {
			return nil
		}
		if uint64(n) > uint64(len(d.buf)-d.off) {
			d.fail("truncated byte array (length %d, have %d)", n, len(d.buf)-d.off)
			return nil
		}
		return append([]byte{}, d.bytes(int(n), "byte array")...)
	case 'A':
		return d.array()
	case 'T':
		return d.timestamp()
	case 'F':
		return d.table()
	case 'V':
		return nil
	}
	d.off-- // point at the type letter
	d.fail("unknown field value type %q", t)
	return nil
}

// table writes a field table argument or property. Invalid entries are
// skipped (and recorded in e.err).
func (e *encoder) table(t Table) {
	if e.inHeader && e.depth == 0 && t != nil {
		e.headerTable(t)
		return
	}
	if !e.fieldTable(t) {
		e.long(0)
	}
}

// headerTable is table for a content header's headers, reusing the
// previous header's encoding when t is the same map.
func (e *encoder) headerTable(t Table) {
	if e.lastTable != nil && reflect.ValueOf(t).UnsafePointer() == reflect.ValueOf(e.lastTable).UnsafePointer() {
		e.buf = append(e.buf, e.lastEnc...)
		return
	}
	mark := len(e.buf)
	if !e.fieldTable(t) {
		e.long(0)
		return
	}
	if e.err == nil {
		e.lastTable = t
		e.lastEnc = append(e.lastEnc[:0], e.buf[mark:]...)
	}
}

// fieldTable writes a table (length + entries); on failure it writes
// nothing and returns false.
func (e *encoder) fieldTable(t Table) bool {
	if e.depth >= MaxTableDepth {
		e.setErr("field tables nested deeper than %d", MaxTableDepth)
		return false
	}
	e.depth++
	lenOff := len(e.buf)
	e.long(0)
	ks := len(e.keys)
	for k := range t {
		e.keys = append(e.keys, k)
	}
	ke := len(e.keys)
	slices.Sort(e.keys[ks:ke])
	for i := ks; i < ke; i++ {
		k := e.keys[i]
		if len(k) > math.MaxUint8 {
			e.setErr("field table key of %d bytes (max 255)", len(k))
			continue
		}
		mark := len(e.buf)
		e.buf = append(e.buf, uint8(len(k)))
		e.buf = append(e.buf, k...)
		if !e.value(t[k]) {
			e.buf = e.buf[:mark]
		}
	}
	clear(e.keys[ks:ke])
	e.keys = e.keys[:ks]
	e.depth--
	return e.finishLength(lenOff, "field table")
}

func (e *encoder) array(a []any) bool {
	if e.depth >= MaxTableDepth {
		e.setErr("field arrays nested deeper than %d", MaxTableDepth)
		return false
	}
	e.depth++
	lenOff := len(e.buf)
	e.long(0)
	for _, v := range a {
		e.value(v)
	}
	e.depth--
	return e.finishLength(lenOff, "field array")
}

// finishLength patches the long length placeholder at lenOff.
func (e *encoder) finishLength(lenOff int, what string) bool {
	size := uint64(len(e.buf) - lenOff - 4)
	if size > math.MaxUint32 {
		e.setErr("%s of %d bytes", what, size)
		e.buf = e.buf[:lenOff]
		return false
	}
	e.patchLong(lenOff, uint32(size))
	return true
}

// value writes a type letter and value. On failure it writes nothing,
// records the error and returns false.
func (e *encoder) value(v any) bool {
	mark := len(e.buf)
	switch v := v.(type) {
	case nil:
		e.octet('V')
	case bool:
		var b uint8
		if v {
			b = 1
		}
		e.buf = append(e.buf, 't', b)
	case int8:
		e.buf = append(e.buf, 'b', uint8(v))
	case uint8:
		e.buf = append(e.buf, 'B', v)
	case int16:
		e.octet('s')
		e.short(uint16(v))
	case uint16:
		e.octet('u')
		e.short(v)
	case int32:
		e.octet('I')
		e.long(uint32(v))
	case uint32:
		e.octet('i')
		e.long(v)
	case int64:
		e.octet('l')
		e.longlong(uint64(v))
	case int:
		e.octet('l')
		e.longlong(uint64(int64(v)))
	case float32:
		e.octet('f')
		e.long(math.Float32bits(v))
	case float64:
		e.octet('d')
		e.longlong(math.Float64bits(v))
	case Decimal:
		e.buf = append(e.buf, 'D', v.Scale)
		e.long(uint32(v.Value))
	case string:
		if uint64(len(v)) > math.MaxUint32 {
			e.setErr("long string of %d bytes", len(v))
			return false
		}
		e.octet('S')
		e.long(uint32(len(v)))
		e.buf = append(e.buf, v...)
	case []byte:
		if uint64(len(v)) > math.MaxUint32 {
			e.setErr("byte array of %d bytes", len(v))
			return false
		}
		e.octet('x')
		e.long(uint32(len(v)))
		e.buf = append(e.buf, v...)
	case []any:
		e.octet('A')
		if !e.array(v) {
			e.buf = e.buf[:mark]
			return false
		}
	case time.Time:
		e.octet('T')
		e.longlong(uint64(v.Unix()))
	case Table:
		e.octet('F')
		if !e.fieldTable(v) {
			e.buf = e.buf[:mark]
			return false
		}
	default:
		e.setErr("unsupported field value type %T", v)
		return false
	}
	return true
}
