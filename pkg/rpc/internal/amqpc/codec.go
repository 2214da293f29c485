package amqpc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// AMQP 0-9-1 frame types and the frame end octet.
const (
	frameMethod    = 1
	frameHeader    = 2
	frameBody      = 3
	frameHeartbeat = 8
	frameEnd       = 0xCE

	frameHeaderSize = 7
	// frameOverhead is the frame header and the end octet.
	frameOverhead = frameHeaderSize + 1
)

// Class and method ids of the methods this client sends or receives.
const (
	classConnection = 10
	classChannel    = 20
	classQueue      = 50
	classBasic      = 60

	mConnStart     = 10
	mConnStartOk   = 11
	mConnTune      = 30
	mConnTuneOk    = 31
	mConnOpen      = 40
	mConnOpenOk    = 41
	mConnClose     = 50
	mConnCloseOk   = 51
	mConnBlocked   = 60
	mConnUnblocked = 61

	mChanOpen    = 10
	mChanOpenOk  = 11
	mChanFlow    = 20
	mChanFlowOk  = 21
	mChanClose   = 40
	mChanCloseOk = 41

	mQueueDeclare   = 10
	mQueueDeclareOk = 11

	mBasicQos      = 10
	mBasicQosOk    = 11
	mBasicConsume  = 20
	mBasicConsumOk = 21
	mBasicCancel   = 30
	mBasicCancelOk = 31
	mBasicPublish  = 40
	mBasicReturn   = 50
	mBasicDeliver  = 60
	mBasicAck      = 80
	mBasicReject   = 90
	mBasicNack     = 120
)

// errMalformed is any frame or field that does not decode.
var errMalformed = errors.New("amqpc: malformed frame")

// Properties are a message's basic properties. Field names follow
// amqp091-go's so code moves between the two easily.
type Properties struct {
	ContentType     string
	ContentEncoding string
	Headers         amqp.Table
	DeliveryMode    uint8
	Priority        uint8
	CorrelationId   string //nolint:revive // amqp091-go's spelling
	ReplyTo         string
	Expiration      string
	MessageId       string //nolint:revive // amqp091-go's spelling
	Timestamp       time.Time
	Type            string
	UserId          string //nolint:revive // amqp091-go's spelling
	AppId           string //nolint:revive // amqp091-go's spelling

	// HeaderList is sent with Headers, in order, and saves a publisher
	// the map for a header or two.
	HeaderList []Field
	// rawHeaders is a received message's header table, still encoded:
	// Header finds a field in it without building a map per message.
	rawHeaders []byte
}

// Field is one header of HeaderList. Value has amqp091-go's Go types,
// or is an *int64: a long long read when the message is encoded.
type Field struct {
	Key   string
	Value any
}

// Header returns a header's value: from Headers or HeaderList when set
// (a message built in code), else from the received table. Values have
// amqp091-go's Go types.
func (p *Properties) Header(key string) (any, bool) {
	if v, ok := p.Headers[key]; ok {
		return v, true
	}
	for _, f := range p.HeaderList {
		if f.Key == key {
			if n, ok := f.Value.(*int64); ok {
				return *n, true
			}
			return f.Value, true
		}
	}
	d := dec{b: p.rawHeaders}
	for len(d.b) > 0 && d.err == nil {
		n := int(d.octet())
		k := d.take(n)
		if d.err == nil && string(k) == key {
			v := d.field(1)
			return v, d.err == nil
		}
		d.skipField()
	}
	return nil, false
}

// HeaderLong returns a received header that is a long long (signed, 'l')
// without boxing it into an interface as Header would; ok is false when
// the header is absent or of another type (then ask Header).
func (p *Properties) HeaderLong(key string) (n int64, ok bool) {
	if p.Headers != nil || p.HeaderList != nil {
		return 0, false
	}
	d := dec{b: p.rawHeaders}
	for len(d.b) > 0 && d.err == nil {
		k := d.take(int(d.octet()))
		if d.err == nil && string(k) == key {
			if d.octet() != 'l' {
				return 0, false
			}
			n = int64(d.longlong())
			return n, d.err == nil
		}
		d.skipField()
	}
	return 0, false
}

// keepRawHeaders copies a decoded header table out of the frame it was
// read from into the spare end of buf (the delivery's body allocation,
// which then serves both) or, without room, a new slice.
func (p *Properties) keepRawHeaders(buf []byte) {
	if p.rawHeaders == nil {
		return
	}
	if cap(buf)-len(buf) >= len(p.rawHeaders) {
		dst := buf[len(buf) : len(buf)+len(p.rawHeaders) : len(buf)+len(p.rawHeaders)]
		copy(dst, p.rawHeaders)
		p.rawHeaders = dst
		return
	}
	p.rawHeaders = append([]byte(nil), p.rawHeaders...)
}

// HeaderIsText reports whether header key of a received message is the
// long string text, reading it in place: the client's check of a reply's
// status, which Header would copy into a new string every time.
func (p *Properties) HeaderIsText(key, text string) bool {
	if p.rawHeaders == nil {
		v, _ := p.Header(key)
		s, ok := v.(string)
		return ok && s == text
	}
	d := dec{b: p.rawHeaders}
	for len(d.b) > 0 && d.err == nil {
		n := int(d.octet())
		k := d.take(n)
		if d.err == nil && string(k) == key {
			if d.octet() != 'S' {
				return false
			}
			v := d.longstr()
			return d.err == nil && string(v) == text
		}
		d.skipField()
	}
	return false
}

// HeaderTable returns every header as a table (decoding a received
// message's table on each call).
func (p *Properties) HeaderTable() amqp.Table {
	if p.rawHeaders == nil {
		return p.Headers
	}
	d := dec{b: p.rawHeaders}
	t := d.tableBody(0)
	if d.err != nil {
		return nil
	}
	return t
}

// Property flags, most significant bit first as in the spec.
const (
	flagContentType     = 0x8000
	flagContentEncoding = 0x4000
	flagHeaders         = 0x2000
	flagDeliveryMode    = 0x1000
	flagPriority        = 0x0800
	flagCorrelationID   = 0x0400
	flagReplyTo         = 0x0200
	flagExpiration      = 0x0100
	flagMessageID       = 0x0080
	flagTimestamp       = 0x0040
	flagType            = 0x0020
	flagUserID          = 0x0010
	flagAppID           = 0x0008
	flagClusterID       = 0x0004
)

// enc appends AMQP fields to a byte slice. Its errors are sticky: a
// string too long for a shortstr or an unencodable table value.
type enc struct {
	b   []byte
	err error
}

func (e *enc) octet(v uint8)     { e.b = append(e.b, v) }
func (e *enc) short(v uint16)    { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) long(v uint32)     { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) longlong(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }

func (e *enc) shortstr(s string) {
	if len(s) > math.MaxUint8 {
		e.fail(fmt.Errorf("amqpc: short string of %d bytes (at most 255)", len(s)))
		return
	}
	e.b = append(e.b, byte(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) longstr(s []byte) {
	e.long(uint32(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// table encodes a field table with the value types amqp091-go accepts.
func (e *enc) table(t amqp.Table) {
	at := len(e.b)
	e.long(0) // length, patched below
	for k, v := range t {
		e.shortstr(k)
		e.field(v)
	}
	binary.BigEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
}

func (e *enc) field(v any) {
	switch v := v.(type) {
	case nil:
		e.octet('V')
	case bool:
		e.octet('t')
		if v {
			e.octet(1)
		} else {
			e.octet(0)
		}
	case int8:
		e.octet('b')
		e.octet(uint8(v))
	case uint8:
		e.octet('B')
		e.octet(v)
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
	case int:
		e.octet('l')
		e.longlong(uint64(v))
	case int64:
		e.octet('l')
		e.longlong(uint64(v))
	case *int64:
		// A long long read at encoding time: a sender reusing its
		// publishing sets the value without boxing an int64 per message.
		e.octet('l')
		e.longlong(uint64(*v))
	case float32:
		e.octet('f')
		e.long(math.Float32bits(v))
	case float64:
		e.octet('d')
		e.longlong(math.Float64bits(v))
	case amqp.Decimal:
		e.octet('D')
		e.octet(v.Scale)
		e.long(uint32(v.Value))
	case string:
		e.octet('S')
		e.long(uint32(len(v)))
		e.b = append(e.b, v...)
	case []byte:
		e.octet('x')
		e.longstr(v)
	case time.Time:
		e.octet('T')
		e.longlong(uint64(v.Unix()))
	case amqp.Table:
		e.octet('F')
		e.table(v)
	case map[string]any:
		e.octet('F')
		e.table(amqp.Table(v))
	case []any:
		e.octet('A')
		at := len(e.b)
		e.long(0)
		for _, x := range v {
			e.field(x)
		}
		binary.BigEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
	case []string:
		e.octet('A')
		at := len(e.b)
		e.long(0)
		for _, x := range v {
			e.field(x)
		}
		binary.BigEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
	default:
		e.fail(fmt.Errorf("amqpc: table value of type %T cannot be encoded", v))
		e.octet('V')
	}
}

// properties encodes a content header's property flags and list.
func (e *enc) properties(p *Properties) {
	at := len(e.b)
	e.short(0) // flags, patched below
	var flags uint16
	if p.ContentType != "" {
		flags |= flagContentType
		e.shortstr(p.ContentType)
	}
	if p.ContentEncoding != "" {
		flags |= flagContentEncoding
		e.shortstr(p.ContentEncoding)
	}
	if len(p.Headers) > 0 || len(p.HeaderList) > 0 {
		flags |= flagHeaders
		at := len(e.b)
		e.long(0)
		for k, v := range p.Headers {
			e.shortstr(k)
			e.field(v)
		}
		for _, f := range p.HeaderList {
			e.shortstr(f.Key)
			e.field(f.Value)
		}
		binary.BigEndian.PutUint32(e.b[at:], uint32(len(e.b)-at-4))
	}
	if p.DeliveryMode != 0 {
		flags |= flagDeliveryMode
		e.octet(p.DeliveryMode)
	}
	if p.Priority != 0 {
		flags |= flagPriority
		e.octet(p.Priority)
	}
	if p.CorrelationId != "" {
		flags |= flagCorrelationID
		e.shortstr(p.CorrelationId)
	}
	if p.ReplyTo != "" {
		flags |= flagReplyTo
		e.shortstr(p.ReplyTo)
	}
	if p.Expiration != "" {
		flags |= flagExpiration
		e.shortstr(p.Expiration)
	}
	if p.MessageId != "" {
		flags |= flagMessageID
		e.shortstr(p.MessageId)
	}
	if !p.Timestamp.IsZero() {
		flags |= flagTimestamp
		e.longlong(uint64(p.Timestamp.Unix()))
	}
	if p.Type != "" {
		flags |= flagType
		e.shortstr(p.Type)
	}
	if p.UserId != "" {
		flags |= flagUserID
		e.shortstr(p.UserId)
	}
	if p.AppId != "" {
		flags |= flagAppID
		e.shortstr(p.AppId)
	}
	binary.BigEndian.PutUint16(e.b[at:], flags)
}

// dec reads AMQP fields from a frame payload; past the end it sets err
// and returns zero values, so a decoder checks err once at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.err = errMalformed
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) octet() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *dec) short() uint16 {
	if b := d.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *dec) long() uint32 {
	if b := d.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *dec) longlong() uint64 {
	if b := d.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *dec) shortstr() string { return string(d.take(int(d.octet()))) }

// strCache holds the last value of fields that repeat message after
// message on a channel (a reply's routing key, a request's type, reply_to
// and, under a fixed timeout, often its expiration, the content type), so
// decoding a repeat allocates nothing.
type strCache struct {
	consumerTag, exchange, routingKey, contentType, replyTo, expiration, typ, userID, appID string
}

// cachedstr reads a short string, reusing *slot when it is the same.
func (d *dec) cachedstr(slot *string) string {
	b := d.take(int(d.octet()))
	if slot == nil {
		return string(b)
	}
	if string(b) != *slot {
		*slot = string(b)
	}
	return *slot
}

func (d *dec) longstr() []byte {
	n := d.long()
	if uint64(n) > uint64(len(d.b)) {
		d.err = errMalformed
		return nil
	}
	return d.take(int(n))
}

// maxDepth bounds nested tables and arrays, so a hostile frame cannot
// exhaust the stack.
const maxDepth = 32

func (d *dec) table(depth int) amqp.Table {
	raw := d.longstr()
	if d.err != nil {
		return nil
	}
	sub := dec{b: raw}
	t := sub.tableBody(depth)
	if sub.err != nil {
		d.err = sub.err
		return nil
	}
	return t
}

// tableBody decodes the fields of a table whose length was read.
func (d *dec) tableBody(depth int) amqp.Table {
	if depth > maxDepth {
		d.err = errMalformed
		return nil
	}
	sub := d
	t := amqp.Table{}
	for len(sub.b) > 0 && sub.err == nil {
		k := sub.shortstr()
		v := sub.field(depth + 1)
		if sub.err == nil {
			t[k] = v
		}
	}
	if sub.err != nil {
		return nil
	}
	return t
}

// skipField passes over one field value without building it.
func (d *dec) skipField() {
	switch d.octet() {
	case 't', 'b', 'B':
		d.take(1)
	case 's', 'u':
		d.take(2)
	case 'I', 'i', 'f':
		d.take(4)
	case 'l', 'L', 'd', 'T':
		d.take(8)
	case 'D':
		d.take(5)
	case 'S', 'x', 'F', 'A':
		// Nested tables and arrays are checked when decoded (Header,
		// HeaderTable); skipping needs only their length.
		d.longstr()
	case 'V':
	default:
		d.err = errMalformed
	}
}

// field decodes one value into the Go type amqp091-go would produce.
func (d *dec) field(depth int) any {
	switch d.octet() {
	case 't':
		return d.octet() != 0
	case 'b':
		return int8(d.octet())
	case 'B':
		return d.octet()
	case 's':
		return int16(d.short())
	case 'u':
		return d.short()
	case 'I':
		return int32(d.long())
	case 'i':
		return d.long()
	case 'l':
		return int64(d.longlong())
	case 'L':
		return d.longlong()
	case 'f':
		return math.Float32frombits(d.long())
	case 'd':
		return math.Float64frombits(d.longlong())
	case 'D':
		scale := d.octet()
		return amqp.Decimal{Scale: scale, Value: int32(d.long())}
	case 'S':
		return string(d.longstr())
	case 'x':
		return append([]byte(nil), d.longstr()...)
	case 'T':
		return time.Unix(int64(d.longlong()), 0)
	case 'F':
		return d.table(depth)
	case 'A':
		raw := d.longstr()
		if d.err != nil {
			return nil
		}
		if depth > maxDepth {
			d.err = errMalformed
			return nil
		}
		sub := dec{b: raw}
		var a []any
		for len(sub.b) > 0 && sub.err == nil {
			a = append(a, sub.field(depth+1))
		}
		if sub.err != nil {
			d.err = sub.err
		}
		return a
	case 'V':
		return nil
	}
	d.err = errMalformed
	return nil
}

// properties decodes a content header's property list; cache, when not
// nil, spares the allocation of repeated strings.
func (d *dec) properties(cache *strCache) Properties {
	var c strCache
	if cache == nil {
		cache = &c
	}
	var p Properties
	flags := d.short()
	if flags&1 != 0 {
		// A continuation of the flags: no 0-9-1 property uses it.
		d.err = errMalformed
		return p
	}
	if flags&flagContentType != 0 {
		p.ContentType = d.cachedstr(&cache.contentType)
	}
	if flags&flagContentEncoding != 0 {
		p.ContentEncoding = d.shortstr()
	}
	if flags&flagHeaders != 0 {
		raw := d.longstr()
		if d.err == nil {
			// Checked now, so Header need not report a malformed table.
			v := dec{b: raw}
			for len(v.b) > 0 && v.err == nil {
				_ = v.take(int(v.octet()))
				v.skipField()
			}
			if v.err != nil {
				d.err = v.err
			}
			p.rawHeaders = raw // in d's buffer: the caller copies it (keepRawHeaders)
		}
	}
	if flags&flagDeliveryMode != 0 {
		p.DeliveryMode = d.octet()
	}
	if flags&flagPriority != 0 {
		p.Priority = d.octet()
	}
	if flags&flagCorrelationID != 0 {
		p.CorrelationId = d.shortstr()
	}
	if flags&flagReplyTo != 0 {
		p.ReplyTo = d.cachedstr(&cache.replyTo)
	}
	if flags&flagExpiration != 0 {
		p.Expiration = d.cachedstr(&cache.expiration)
	}
	if flags&flagMessageID != 0 {
		p.MessageId = d.shortstr()
	}
	if flags&flagTimestamp != 0 {
		p.Timestamp = time.Unix(int64(d.longlong()), 0)
	}
	if flags&flagType != 0 {
		p.Type = d.cachedstr(&cache.typ)
	}
	if flags&flagUserID != 0 {
		p.UserId = d.cachedstr(&cache.userID)
	}
	if flags&flagAppID != 0 {
		p.AppId = d.cachedstr(&cache.appID)
	}
	if flags&flagClusterID != 0 {
		_ = d.shortstr()
	}
	return p
}

// Frame writing: a frame is built in place at the end of a buffer, its
// size patched in once the payload is known.

// beginFrame appends a frame header with a size to patch; it returns the
// offset endFrame needs.
func beginFrame(b []byte, typ uint8, channel uint16) ([]byte, int) {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, channel)
	at := len(b)
	return append(b, 0, 0, 0, 0), at
}

func endFrame(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return append(b, frameEnd)
}

// appendMethod appends one method frame whose arguments args appends.
func appendMethod(b []byte, channel, class, method uint16, args func(*enc)) ([]byte, error) {
	b, at := beginFrame(b, frameMethod, channel)
	e := enc{b: b}
	e.short(class)
	e.short(method)
	if args != nil {
		args(&e)
	}
	if e.err != nil {
		return b[:at-3], e.err
	}
	return endFrame(e.b, at), nil
}

// appendContent appends a content header and body frames for a message
// of class basic, the body split at frameMax.
func appendContent(b []byte, channel uint16, p *Properties, body []byte, frameMax int) ([]byte, error) {
	start := len(b)
	b, at := beginFrame(b, frameHeader, channel)
	e := enc{b: b}
	e.short(classBasic)
	e.short(0) // weight
	e.longlong(uint64(len(body)))
	e.properties(p)
	if e.err != nil {
		return b[:start], e.err
	}
	b = endFrame(e.b, at)
	chunk := frameMax - frameOverhead
	for len(body) > 0 {
		n := min(len(body), chunk)
		b, at = beginFrame(b, frameBody, channel)
		b = append(b, body[:n]...)
		b = endFrame(b, at)
		body = body[n:]
	}
	return b, nil
}
