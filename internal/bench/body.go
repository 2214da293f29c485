package bench

import "encoding/binary"

// HeaderSize is the size of the header every benchmark message starts with,
// and so the smallest allowed --size.
//
// Layout (little-endian):
//
//	[0:4)   magic "HBM1"
//	[4:8)   producer id (uint32; the caller id in the rpc scenario)
//	[8:16)  per-producer sequence number (uint64, starting at 0)
//	[16:24) actual send time, unix nanoseconds (int64)
//	[24:32) intended send time per the --rate schedule, unix nanoseconds
//	        (equal to the actual send time when not paced)
//	[32:)   padding up to --size
const HeaderSize = 32

var bodyMagic = [4]byte{'H', 'B', 'M', '1'}

// Header is the decoded form of a message header.
type Header struct {
	Producer uint32
	Seq      uint64
	SentAt   int64 // unix nanos, taken immediately before publishing
	Intended int64 // unix nanos, when the schedule wanted it sent
}

// NewBody returns a message buffer of size bytes (at least HeaderSize) with
// readable padding. Producers allocate one and rewrite its header with
// EncodeHeader before every publish; the client library copies the body into
// its write buffer during the publish call, so reusing it is safe.
func NewBody(size int) []byte {
	b := make([]byte, max(size, HeaderSize))
	copy(b, bodyMagic[:])
	for i := HeaderSize; i < len(b); i++ {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// EncodeHeader writes h into b[:HeaderSize]. b must be at least HeaderSize
// long.
func EncodeHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	copy(b[0:4], bodyMagic[:])
	binary.LittleEndian.PutUint32(b[4:8], h.Producer)
	binary.LittleEndian.PutUint64(b[8:16], h.Seq)
	binary.LittleEndian.PutUint64(b[16:24], uint64(h.SentAt))
	binary.LittleEndian.PutUint64(b[24:32], uint64(h.Intended))
}

// DecodeHeader parses the header of b. It reports false when b is too short
// or does not carry the benchmark magic (a message this tool did not send).
func DecodeHeader(b []byte) (Header, bool) {
	if len(b) < HeaderSize || b[0] != bodyMagic[0] || b[1] != bodyMagic[1] ||
		b[2] != bodyMagic[2] || b[3] != bodyMagic[3] {
		return Header{}, false
	}
	return Header{
		Producer: binary.LittleEndian.Uint32(b[4:8]),
		Seq:      binary.LittleEndian.Uint64(b[8:16]),
		SentAt:   int64(binary.LittleEndian.Uint64(b[16:24])),
		Intended: int64(binary.LittleEndian.Uint64(b[24:32])),
	}, true
}
