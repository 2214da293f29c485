package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Message metadata as stored in the log next to the body: exchange,
// routing key and properties in a small tagged binary form. It is the
// broker's own format (the core does not depend on any wire protocol's
// codec); like the log's, its tags are frozen.
//
//	meta    = version(1) exchange(str) key(str) flags(u16) fields...
//	str     = len(uvarint) bytes
//	value   = tag(1) payload
const metaVersion = 1

// Value tags in stored tables.
const (
	tagNil byte = iota
	tagBool
	tagInt8
	tagUint8
	tagInt16
	tagUint16
	tagInt32
	tagUint32
	tagInt64
	tagUint64
	tagFloat32
	tagFloat64
	tagString
	tagBytes
	tagArray
	tagTable
	tagTime
	tagInt
)

var errBadMeta = errors.New("malformed stored message metadata")

const maxMetaDepth = 64

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeMeta serialises everything about m but its body.
func encodeMeta(m *Message) []byte { return appendMeta(make([]byte, 0, 64), m) }

// appendMeta appends encodeMeta's form of m to b.
func appendMeta(b []byte, m *Message) []byte {
	p := &m.Properties
	b = append(b, metaVersion)
	b = appendStr(b, m.Exchange)
	b = appendStr(b, m.RoutingKey)
	strs := []string{p.ContentType, p.ContentEncoding, p.CorrelationID, p.ReplyTo, p.Expiration, p.MessageID, p.Type, p.UserID, p.AppID, p.ClusterID}
	for _, s := range strs {
		b = appendStr(b, s)
	}
	b = append(b, p.DeliveryMode, p.Priority)
	ts := int64(0)
	if !p.Timestamp.IsZero() {
		ts = p.Timestamp.Unix()
	}
	b = binary.AppendVarint(b, ts)
	return appendTable(b, p.Headers, 0)
}

func appendTable(b []byte, t Table, depth int) []byte {
	if t == nil || depth > maxMetaDepth {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(t))+1)
	for k, v := range t {
		b = appendStr(b, k)
		b = appendValue(b, v, depth)
	}
	return b
}

func appendValue(b []byte, v any, depth int) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, tagNil)
	case bool:
		if x {
			return append(b, tagBool, 1)
		}
		return append(b, tagBool, 0)
	case int8:
		return append(b, tagInt8, byte(x))
	case uint8:
		return append(b, tagUint8, x)
	case int16:
		return binary.AppendVarint(append(b, tagInt16), int64(x))
	case uint16:
		return binary.AppendUvarint(append(b, tagUint16), uint64(x))
	case int32:
		return binary.AppendVarint(append(b, tagInt32), int64(x))
	case uint32:
		return binary.AppendUvarint(append(b, tagUint32), uint64(x))
	case int64:
		return binary.AppendVarint(append(b, tagInt64), x)
	case int:
		return binary.AppendVarint(append(b, tagInt), int64(x))
	case uint64:
		return binary.AppendUvarint(append(b, tagUint64), x)
	case float32:
		return binary.BigEndian.AppendUint32(append(b, tagFloat32), math.Float32bits(x))
	case float64:
		return binary.BigEndian.AppendUint64(append(b, tagFloat64), math.Float64bits(x))
	case string:
		return appendStr(append(b, tagString), x)
	case []byte:
		return appendStr(append(b, tagBytes), string(x))
	case time.Time:
		return binary.AppendVarint(append(b, tagTime), x.Unix())
	case []any:
		b = binary.AppendUvarint(append(b, tagArray), uint64(len(x)))
		for _, e := range x {
			b = appendValue(b, e, depth+1)
		}
		return b
	case Table:
		return appendTable(append(b, tagTable), x, depth+1)
	}
	// A value type the core does not know (a protocol's own decimal type,
	// say) is kept as its text rather than lost.
	return appendStr(append(b, tagString), fmt.Sprint(v))
}

type metaReader struct {
	b   []byte
	err error
}

func (r *metaReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadMeta
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBadMeta
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *metaReader) bytes(n uint64) []byte {
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errBadMeta
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *metaReader) str() string { return string(r.bytes(r.uvarint())) }

func (r *metaReader) byte() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// decodeMeta restores what encodeMeta wrote into m (body excluded).
func decodeMeta(b []byte, m *Message) error {
	r := &metaReader{b: b}
	if r.byte() != metaVersion {
		return fmt.Errorf("%w: unknown version", errBadMeta)
	}
	m.Exchange = r.str()
	m.RoutingKey = r.str()
	p := &m.Properties
	for _, s := range []*string{&p.ContentType, &p.ContentEncoding, &p.CorrelationID, &p.ReplyTo, &p.Expiration, &p.MessageID, &p.Type, &p.UserID, &p.AppID, &p.ClusterID} {
		*s = r.str()
	}
	p.DeliveryMode = r.byte()
	p.Priority = r.byte()
	if ts := r.varint(); ts != 0 {
		p.Timestamp = time.Unix(ts, 0).UTC()
	}
	p.Headers = r.table(0)
	return r.err
}

func (r *metaReader) table(depth int) Table {
	n := r.uvarint()
	if n == 0 || r.err != nil {
		return nil
	}
	n--
	if depth > maxMetaDepth || n > uint64(len(r.b)) {
		r.err = errBadMeta
		return nil
	}
	t := make(Table, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		k := r.str()
		t[k] = r.value(depth)
	}
	return t
}

func (r *metaReader) value(depth int) any {
	switch tag := r.byte(); tag {
	case tagNil:
		return nil
	case tagBool:
		return r.byte() == 1
	case tagInt8:
		return int8(r.byte())
	case tagUint8:
		return r.byte()
	case tagInt16:
		return int16(r.varint())
	case tagUint16:
		return uint16(r.uvarint())
	case tagInt32:
		return int32(r.varint())
	case tagUint32:
		return uint32(r.uvarint())
	case tagInt64:
		return r.varint()
	case tagInt:
		return int(r.varint())
	case tagUint64:
		return r.uvarint()
	case tagFloat32:
		b := r.bytes(4)
		if b == nil {
			return nil
		}
		return math.Float32frombits(binary.BigEndian.Uint32(b))
	case tagFloat64:
		b := r.bytes(8)
		if b == nil {
			return nil
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	case tagString:
		return r.str()
	case tagBytes:
		return append([]byte(nil), r.bytes(r.uvarint())...)
	case tagTime:
		return time.Unix(r.varint(), 0).UTC()
	case tagArray:
		n := r.uvarint()
		if depth > maxMetaDepth || n > uint64(len(r.b)) {
			r.err = errBadMeta
			return nil
		}
		a := make([]any, 0, n)
		for i := uint64(0); i < n && r.err == nil; i++ {
			a = append(a, r.value(depth+1))
		}
		return a
	case tagTable:
		return r.table(depth + 1)
	default:
		r.err = fmt.Errorf("%w: unknown value tag %d", errBadMeta, tag)
		return nil
	}
}
