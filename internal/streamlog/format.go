package streamlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// The constants below are the on-disk format (see the package doc). They are
// frozen: changing any of them requires a new FormatVersion and a reader for
// the old one.
const (
	// FormatVersion is the file format this package writes and reads.
	FormatVersion = 1
	// segmentMagic, indexMagic and offsetsMagic open the three file kinds.
	segmentMagic = "HRLDSTRM"
	indexMagic   = "HRLDSIDX"
	offsetsMagic = "HRLDSOFF"
	// fileHeaderSize is the fixed size of every file header.
	fileHeaderSize = 32
	// chunkHeaderSize is length(4) crc(4) first offset(8) first
	// timestamp(8) count(4) flags(4).
	chunkHeaderSize = 32
	// recordHeaderSize is length(4) timestamp(8).
	recordHeaderSize = 12
	// indexEntrySize is offset(8) timestamp(8) position(8) reserved(4) crc(4).
	indexEntrySize = 32
	// offsetFrameHeaderSize is length(4) crc(4) kind(1) offset(8).
	offsetFrameHeaderSize = 17
	// maxChunkLength bounds a chunk's length field, so a damaged length can
	// never ask for a huge allocation.
	maxChunkLength = 1 << 30
	// maxConsumerName bounds a stored consumer name (RabbitMQ's offset
	// tracking reference is at most 255 bytes; a little slack for prefixes).
	maxConsumerName = 1024

	segmentSuffix = ".seg"
	indexSuffix   = ".idx"
	offsetsName   = "offsets.log"
	offsetsTemp   = "offsets.tmp"
)

// Offset frame kinds in offsets.log. 0 is never valid.
const (
	offsetKindStore  = 1
	offsetKindDelete = 2
)

// Decoding errors; recovery and readers treat them as damage.
var (
	errShort    = errors.New("streamlog: short data")
	errBadCRC   = errors.New("streamlog: checksum mismatch")
	errMalform  = errors.New("streamlog: malformed data")
	errBadMagic = errors.New("streamlog: bad magic")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// encodeFileHeader returns the 32-byte header of a segment or index file
// (first is its first offset) or of the offsets file (first is 0).
func encodeFileHeader(magic string, first uint64) []byte {
	h := make([]byte, fileHeaderSize)
	copy(h, magic)
	le := binary.LittleEndian
	le.PutUint16(h[8:], FormatVersion)
	// h[10:12] flags and h[20:28] reserved: zero.
	le.PutUint64(h[12:], first)
	le.PutUint32(h[28:], crc(h[:28]))
	return h
}

// decodeFileHeader validates h against magic and returns the first offset.
func decodeFileHeader(h []byte, magic string) (uint64, error) {
	if len(h) < fileHeaderSize {
		return 0, errShort
	}
	if string(h[:8]) != magic {
		return 0, errBadMagic
	}
	le := binary.LittleEndian
	if crc(h[:28]) != le.Uint32(h[28:]) {
		return 0, errBadCRC
	}
	if v := le.Uint16(h[8:]); v != FormatVersion {
		return 0, fmt.Errorf("streamlog: unsupported format version %d", v)
	}
	return le.Uint64(h[12:]), nil
}

// chunkHeader is the decoded fixed part of a chunk.
type chunkHeader struct {
	length  uint32 // bytes after the first 8 (header rest + records)
	first   uint64 // offset of the first record
	firstTS int64  // timestamp of the first record, unix nanoseconds
	count   uint32 // records in the chunk, >= 1
}

// size is the chunk's full size in the file.
func (h chunkHeader) size() int64 { return 8 + int64(h.length) }

// decodeChunkHeader checks the fixed fields of the chunk at the start of b
// (not the CRC, which needs the whole chunk: see checkChunk).
func decodeChunkHeader(b []byte) (chunkHeader, error) {
	if len(b) < chunkHeaderSize {
		return chunkHeader{}, errShort
	}
	le := binary.LittleEndian
	h := chunkHeader{
		length:  le.Uint32(b),
		first:   le.Uint64(b[8:]),
		firstTS: int64(le.Uint64(b[16:])),
		count:   le.Uint32(b[24:]),
	}
	// A record is at least recordHeaderSize bytes; zero-filled space has
	// length 0 and count 0 and never passes.
	if h.length > maxChunkLength || h.count == 0 || le.Uint32(b[28:]) != 0 ||
		uint64(h.length) < chunkHeaderSize-8+uint64(h.count)*recordHeaderSize {
		return chunkHeader{}, errMalform
	}
	return h, nil
}

// checkChunk verifies the CRC of the whole chunk b (len(b) == h.size()) and
// that its records exactly fill it, start at h.firstTS and never go back
// in time.
func checkChunk(h chunkHeader, b []byte) error {
	le := binary.LittleEndian
	if crc(b[8:]) != le.Uint32(b[4:]) {
		return errBadCRC
	}
	p := b[chunkHeaderSize:]
	prev := h.firstTS
	for i := uint32(0); i < h.count; i++ {
		if len(p) < recordHeaderSize {
			return errMalform
		}
		n := uint64(le.Uint32(p))
		ts := int64(le.Uint64(p[4:]))
		if n > uint64(len(p)-recordHeaderSize) || ts < prev || (i == 0 && ts != h.firstTS) {
			return errMalform
		}
		prev = ts
		p = p[recordHeaderSize+n:]
	}
	if len(p) != 0 {
		return errMalform
	}
	return nil
}

// chunkLastTS returns the timestamp of the last record of a checked chunk.
func chunkLastTS(h chunkHeader, b []byte) int64 {
	var ts int64
	for p, i := b[chunkHeaderSize:], uint32(0); i < h.count; i++ {
		n := binary.LittleEndian.Uint32(p)
		ts = int64(binary.LittleEndian.Uint64(p[4:]))
		p = p[recordHeaderSize+int(n):]
	}
	return ts
}

// decodeRecord returns the record at the start of p (from a checked chunk):
// its timestamp, payload (aliasing p) and encoded size.
func decodeRecord(p []byte) (ts int64, payload []byte, size int) {
	n := int(binary.LittleEndian.Uint32(p))
	return int64(binary.LittleEndian.Uint64(p[4:])), p[recordHeaderSize : recordHeaderSize+n], recordHeaderSize + n
}

// chunkBuilder encodes one chunk into buf.
type chunkBuilder struct {
	buf     []byte
	first   uint64
	firstTS int64
	count   uint32
}

func (c *chunkBuilder) reset(buf []byte, first uint64, firstTS int64) {
	var header [chunkHeaderSize]byte // filled in by finish
	c.buf = append(buf[:0], header[:]...)
	c.first, c.firstTS, c.count = first, firstTS, 0
}

func (c *chunkBuilder) add(ts int64, payload []byte) {
	c.buf = binary.LittleEndian.AppendUint32(c.buf, uint32(len(payload)))
	c.buf = binary.LittleEndian.AppendUint64(c.buf, uint64(ts))
	c.buf = append(c.buf, payload...)
	c.count++
}

// finish fills in the header and returns the encoded chunk.
func (c *chunkBuilder) finish() []byte {
	le := binary.LittleEndian
	b := c.buf
	le.PutUint32(b, uint32(len(b)-8))
	le.PutUint64(b[8:], c.first)
	le.PutUint64(b[16:], uint64(c.firstTS))
	le.PutUint32(b[24:], c.count)
	le.PutUint32(b[28:], 0)
	le.PutUint32(b[4:], crc(b[8:]))
	return b
}

// indexEntry says that the chunk starting with offset, whose first record
// has timestamp ts, begins at byte pos of its segment.
type indexEntry struct {
	offset uint64
	ts     int64
	pos    int64
}

func appendIndexEntry(dst []byte, e indexEntry) []byte {
	le := binary.LittleEndian
	start := len(dst)
	dst = le.AppendUint64(dst, e.offset)
	dst = le.AppendUint64(dst, uint64(e.ts))
	dst = le.AppendUint64(dst, uint64(e.pos))
	dst = le.AppendUint32(dst, 0)
	return le.AppendUint32(dst, crc(dst[start:]))
}

func decodeIndexEntry(b []byte) (indexEntry, error) {
	if len(b) < indexEntrySize {
		return indexEntry{}, errShort
	}
	le := binary.LittleEndian
	if crc(b[:28]) != le.Uint32(b[28:]) {
		return indexEntry{}, errBadCRC
	}
	e := indexEntry{offset: le.Uint64(b), ts: int64(le.Uint64(b[8:])), pos: int64(le.Uint64(b[16:]))}
	if le.Uint32(b[24:]) != 0 || e.pos < fileHeaderSize {
		return indexEntry{}, errMalform
	}
	return e, nil
}

// decodeIndex parses an index file for the segment starting at first:
// the valid prefix of its entries (each strictly after the one before, the
// first one at the segment's first chunk). It stops at the first bad entry;
// clean reports whether every byte was a valid entry.
func decodeIndex(b []byte, first uint64) (entries []indexEntry, clean bool) {
	f, err := decodeFileHeader(b, indexMagic)
	if err != nil || f != first {
		return nil, false
	}
	for p := b[fileHeaderSize:]; len(p) > 0; p = p[indexEntrySize:] {
		e, err := decodeIndexEntry(p)
		if err != nil {
			return entries, false
		}
		if n := len(entries); n == 0 {
			if e.offset != first || e.pos != fileHeaderSize {
				return nil, false
			}
		} else if prev := entries[n-1]; e.offset <= prev.offset || e.pos <= prev.pos || e.ts < prev.ts {
			return entries, false
		}
		entries = append(entries, e)
	}
	return entries, true
}

// appendOffsetFrame encodes a consumer-position record of offsets.log.
func appendOffsetFrame(dst []byte, kind byte, name string, offset uint64) []byte {
	le := binary.LittleEndian
	start := len(dst)
	dst = le.AppendUint32(dst, uint32(1+8+len(name)))
	dst = append(dst, 0, 0, 0, 0, kind)
	dst = le.AppendUint64(dst, offset)
	dst = append(dst, name...)
	le.PutUint32(dst[start+4:], crc(dst[start+8:]))
	return dst
}

// decodeOffsetFrame parses the offsets.log frame at the start of b.
func decodeOffsetFrame(b []byte) (kind byte, name string, offset uint64, size int, err error) {
	if len(b) < offsetFrameHeaderSize {
		return 0, "", 0, 0, errShort
	}
	le := binary.LittleEndian
	n := uint64(le.Uint32(b))
	if n < 9 || n > 9+maxConsumerName {
		return 0, "", 0, 0, errMalform
	}
	if n > uint64(len(b)-8) {
		return 0, "", 0, 0, errShort
	}
	total := 8 + int(n)
	if crc(b[8:total]) != le.Uint32(b[4:]) {
		return 0, "", 0, 0, errBadCRC
	}
	kind = b[8]
	if kind != offsetKindStore && kind != offsetKindDelete {
		return 0, "", 0, 0, errMalform
	}
	return kind, string(b[17:total]), le.Uint64(b[9:]), total, nil
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentSuffix) }
func indexName(first uint64) string   { return fmt.Sprintf("%020d%s", first, indexSuffix) }

// parseFileName returns the first offset named by a segment or index file
// name with the given suffix.
func parseFileName(name, suffix string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, suffix)
	if !ok || len(digits) != 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(digits, 10, 64)
	return v, err == nil
}
