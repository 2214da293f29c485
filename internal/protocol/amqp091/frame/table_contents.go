package frame

import (
	"encoding/binary"
	"math"
)

// DecodeTableContents decodes a field table given without its 4-byte
// length prefix, the form the AMQPLAIN SASL response takes.
func DecodeTableContents(b []byte) (Table, error) {
	if uint64(len(b)) > math.MaxUint32 {
		return nil, ErrSyntax
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	buf = append(buf, b...)
	d := decoder{buf: buf}
	t := d.table()
	return t, d.err
}
