package frame

import "fmt"

// ContentHeader is the payload of a content header frame.
//
//	class-id short | weight short (0) | body-size longlong |
//	property-flags short... | property-list
//
// Properties are decoded with the basic class layout whatever ClassID says
// (basic is the only 0-9-1 class with content); checking that ClassID
// matches the preceding method is up to the caller.
type ContentHeader struct {
	ClassID    uint16
	BodySize   uint64
	Properties Properties
}

// DecodeContentHeader decodes a content header frame payload into h
// (overwriting it). Truncated input, unknown property flags or trailing
// bytes return an error wrapping ErrSyntax. The weight field is ignored.
// Strings and tables are copied: h does not alias payload.
func DecodeContentHeader(payload []byte, h *ContentHeader) error {
	return DecodeContentHeaderMemo(payload, h, nil)
}

// Memo remembers what the previous frame decoded with it decoded to, so
// that the next one from the same publisher shares what did not change
// instead of allocating it again: each short string (content type,
// reply_to, type, a basic.publish's routing key...) that equals the one in
// the same position before, and a content header's headers table when its
// bytes are the same (a service's replies all carry {x-rpc-status: OK}).
// A publisher's properties mostly repeat, so this saves most of a
// header's allocations. Use one memo for content headers and another for
// methods (their strings' positions differ).
//
// The shared table is safe because a published message's headers are
// never changed in place (the broker and every adapter copy a table
// before changing it: a message routed to many queues shares one).
// The zero value is ready to use; a memo is not safe for concurrent use.
type Memo struct {
	raw   []byte // the bytes table was decoded from
	table Table
	strs  [10]string // short strings by their position in the header
	next  int        // position of the next short string

	// DecodeMethodMemo's decoder and its results for the hot methods.
	d       decoder
	publish BasicPublish
	ack     BasicAck
}

// str returns b as a string, the memo's own when it is the same as the
// one in this position last time.
func (m *Memo) str(b []byte) string {
	i := m.next
	m.next++
	if i >= len(m.strs) {
		return string(b)
	}
	if m.strs[i] != string(b) {
		m.strs[i] = string(b)
	}
	return m.strs[i]
}

// DecodeContentHeaderMemo is DecodeContentHeader sharing unchanged values
// with the previous header decoded with the same memo (nil: none).
func DecodeContentHeaderMemo(payload []byte, h *ContentHeader, memo *Memo) error {
	*h = ContentHeader{}
	d := decoder{buf: payload, memo: memo, memoTable: true}
	if memo != nil {
		memo.next = 0
	}
	h.ClassID = d.short()
	d.short() // weight, unused
	h.BodySize = d.longlong()
	flags := d.short()
	for more := flags; d.err == nil && more&1 != 0; {
		// Continuation words carry properties basic does not have; they
		// are accepted only if empty.
		more = d.short()
		if more&^1 != 0 {
			d.fail("unknown property flags %#04x in continuation word", more)
		}
	}
	if d.err != nil {
		return fmt.Errorf("content header: %w", d.err)
	}
	if unknown := flags &^ propertyMask &^ 1; unknown != 0 {
		return fmt.Errorf("%w: content header: unknown property flags %#04x", ErrSyntax, unknown)
	}
	h.Properties.decode(&d, flags)
	if d.err != nil {
		return fmt.Errorf("content header: %w", d.err)
	}
	if d.off != len(payload) {
		return fmt.Errorf("%w: content header: %d trailing bytes", ErrSyntax, len(payload)-d.off)
	}
	return nil
}

// AppendContentHeader appends the content header frame payload for h to b
// (weight 0, a single property flags word) and returns the extended slice.
// See the package documentation for how invalid values are handled.
func AppendContentHeader(b []byte, h *ContentHeader) []byte {
	e := encoder{buf: b}
	e.contentHeader(h.ClassID, h.BodySize, &h.Properties)
	return e.buf
}

// contentHeader writes a content header payload; p may be nil.
func (e *encoder) contentHeader(classID uint16, bodySize uint64, p *Properties) {
	e.short(classID)
	e.short(0) // weight
	e.longlong(bodySize)
	if p == nil {
		e.short(0)
		return
	}
	f := p.flags()
	e.short(f)
	p.encode(e, f)
}
