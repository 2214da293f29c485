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
	*h = ContentHeader{}
	d := decoder{buf: payload}
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
