package broker

import (
	"encoding/binary"
	"fmt"
)

// A stream record is one message as a stream keeps it: the message log's
// metadata form (meta.go: exchange, routing key, properties, headers) and
// the body, so that a consumer reading it back, after a restart too, gets
// the message as it was published.
//
//	record = version(1) metaLen(uvarint) meta(metaLen bytes) body(rest)
//
// The version is frozen at 1; a new layout needs a new version and a
// reader for the old one.
const streamRecordVersion = 1

// encodeStreamRecord returns m as a stream record.
func encodeStreamRecord(m *Message) []byte {
	b := make([]byte, 0, 64+len(m.Body)+binary.MaxVarintLen64)
	b = append(b, streamRecordVersion)
	// The meta length is not known before it is written: write it after a
	// reserved varint-sized gap, then close the gap.
	b = append(b, make([]byte, binary.MaxVarintLen64)...)
	start := len(b)
	b = appendMeta(b, m)
	n := binary.PutUvarint(b[1:], uint64(len(b)-start))
	copy(b[1+n:], b[start:])
	b = b[:1+n+len(b)-start]
	return append(b, m.Body...)
}

// decodeStreamRecord restores a message from a stream record. The body is
// copied: rec belongs to the reader and is reused.
func decodeStreamRecord(rec []byte) (*Message, error) {
	if len(rec) == 0 || rec[0] != streamRecordVersion {
		return nil, fmt.Errorf("%w: unknown stream record version", errBadMeta)
	}
	n, k := binary.Uvarint(rec[1:])
	if k <= 0 || n > uint64(len(rec)-1-k) {
		return nil, fmt.Errorf("%w: stream record meta length", errBadMeta)
	}
	meta := rec[1+k : 1+k+int(n)]
	m := &Message{}
	if err := decodeMeta(meta, m); err != nil {
		return nil, err
	}
	m.Body = append([]byte(nil), rec[1+k+int(n):]...)
	return m, nil
}
