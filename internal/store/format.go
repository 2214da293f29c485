package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The constants below are the on-disk format (see the package doc). They are
// frozen: changing any of them requires a new FormatVersion and a reader for
// the old one.
const (
	// segmentMagic opens every segment file.
	segmentMagic = "HRLDLOG\x00"
	// FormatVersion is the segment format this package writes and reads.
	FormatVersion = 1
	// segmentHeaderSize is the fixed size of the segment header.
	segmentHeaderSize = 32
	// frameHeaderSize is length(4) + crc(4) + kind(1).
	frameHeaderSize = 9
	// segmentSuffix names segment files: %020d.seg, the sequence in decimal
	// so that lexical order is log order.
	segmentSuffix = ".seg"
)

// Kind identifies a record type. Values are part of the on-disk format.
type Kind uint8

// Record kinds. 0 is never valid so that zero-filled space is not a record.
const (
	// KindMessage stores a message once: MessageID, Meta, Body.
	KindMessage Kind = 1
	// KindEnqueue puts MessageID in QueueID at position Seq (Redelivered
	// carries the flag when compaction copies an entry).
	KindEnqueue Kind = 2
	// KindAck settles MessageID in QueueID.
	KindAck Kind = 3
	// KindRedelivered marks the (QueueID, MessageID) entry as delivered once.
	KindRedelivered Kind = 4
	// KindQueueDelete drops every entry of QueueID.
	KindQueueDelete Kind = 5
	// kindCommit ends a batch written with one fsync; only the log writes it.
	kindCommit Kind = 0x7f
)

func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindEnqueue:
		return "enqueue"
	case KindAck:
		return "ack"
	case KindRedelivered:
		return "redelivered"
	case KindQueueDelete:
		return "queue-delete"
	case kindCommit:
		return "commit"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool {
	return (k >= KindMessage && k <= KindQueueDelete) || k == kindCommit
}

// Record is one log entry. Which fields are meaningful depends on Kind:
//
//	KindMessage      MessageID, Meta, Body
//	KindEnqueue      QueueID, MessageID, Seq, Redelivered
//	KindAck          QueueID, MessageID
//	KindRedelivered  QueueID, MessageID
//	KindQueueDelete  QueueID
//
// The log does not interpret Meta: the broker stores its encoded properties,
// exchange and routing key there. Slices handed to Append must not be
// modified until the append is durable.
type Record struct {
	Kind        Kind
	QueueID     uint64
	MessageID   uint64
	Seq         uint64
	Redelivered bool
	Meta        []byte
	Body        []byte
}

// Errors returned by the decoder; recovery treats both as damage.
var (
	errShortFrame = errors.New("store: short frame")
	errBadCRC     = errors.New("store: checksum mismatch")
	errBadFrame   = errors.New("store: malformed frame")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// payloadSize is the encoded payload length of r (without frame header).
func payloadSize(r *Record) int {
	switch r.Kind {
	case KindMessage:
		return 8 + 4 + len(r.Meta) + len(r.Body)
	case KindEnqueue:
		return 8 + 8 + 8 + 1
	case KindAck, KindRedelivered:
		return 16
	case KindQueueDelete:
		return 8
	case kindCommit:
		return 8
	}
	return 0
}

// frameSize is the full encoded size of r.
func frameSize(r *Record) int { return frameHeaderSize + payloadSize(r) }

// appendFrame encodes r as a frame at the end of dst.
func appendFrame(dst []byte, r *Record) []byte {
	start := len(dst)
	n := payloadSize(r)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, 0, 0, 0, 0, byte(r.Kind)) // crc filled below
	le := binary.LittleEndian
	switch r.Kind {
	case KindMessage:
		dst = le.AppendUint64(dst, r.MessageID)
		dst = le.AppendUint32(dst, uint32(len(r.Meta)))
		dst = append(dst, r.Meta...)
		dst = append(dst, r.Body...)
	case KindEnqueue:
		dst = le.AppendUint64(dst, r.QueueID)
		dst = le.AppendUint64(dst, r.MessageID)
		dst = le.AppendUint64(dst, r.Seq)
		var f byte
		if r.Redelivered {
			f = 1
		}
		dst = append(dst, f)
	case KindAck, KindRedelivered:
		dst = le.AppendUint64(dst, r.QueueID)
		dst = le.AppendUint64(dst, r.MessageID)
	case KindQueueDelete:
		dst = le.AppendUint64(dst, r.QueueID)
	case kindCommit:
		// Seq holds the record count, MessageID the batch byte length.
		dst = le.AppendUint32(dst, uint32(r.Seq))
		dst = le.AppendUint32(dst, uint32(r.MessageID))
	}
	crc := crc32.Checksum(dst[start+8:], castagnoli)
	le.PutUint32(dst[start+4:], crc)
	return dst
}

// decodeFrame parses the frame at the start of b. It returns the record (its
// slices alias b) and the frame size. It never reads beyond b and never
// allocates based on the length field.
func decodeFrame(b []byte) (Record, int, error) {
	if len(b) < frameHeaderSize {
		return Record{}, 0, errShortFrame
	}
	le := binary.LittleEndian
	n := uint64(le.Uint32(b))
	kind := Kind(b[8])
	if !kind.valid() {
		return Record{}, 0, errBadFrame
	}
	if n > uint64(len(b)-frameHeaderSize) {
		return Record{}, 0, errShortFrame
	}
	total := frameHeaderSize + int(n)
	if crc32.Checksum(b[8:total], castagnoli) != le.Uint32(b[4:]) {
		return Record{}, 0, errBadCRC
	}
	p := b[frameHeaderSize:total]
	r := Record{Kind: kind}
	switch kind {
	case KindMessage:
		if len(p) < 12 {
			return Record{}, 0, errBadFrame
		}
		r.MessageID = le.Uint64(p)
		ml := uint64(le.Uint32(p[8:]))
		if ml > uint64(len(p)-12) {
			return Record{}, 0, errBadFrame
		}
		r.Meta = p[12 : 12+ml]
		r.Body = p[12+ml:]
	case KindEnqueue:
		if len(p) != 25 || p[24] > 1 {
			return Record{}, 0, errBadFrame
		}
		r.QueueID, r.MessageID, r.Seq = le.Uint64(p), le.Uint64(p[8:]), le.Uint64(p[16:])
		r.Redelivered = p[24] == 1
	case KindAck, KindRedelivered:
		if len(p) != 16 {
			return Record{}, 0, errBadFrame
		}
		r.QueueID, r.MessageID = le.Uint64(p), le.Uint64(p[8:])
	case KindQueueDelete:
		if len(p) != 8 {
			return Record{}, 0, errBadFrame
		}
		r.QueueID = le.Uint64(p)
	case kindCommit:
		if len(p) != 8 {
			return Record{}, 0, errBadFrame
		}
		r.Seq, r.MessageID = uint64(le.Uint32(p)), uint64(le.Uint32(p[4:]))
	}
	return r, total, nil
}

// encodeSegmentHeader returns the 32-byte header of segment seq.
func encodeSegmentHeader(seq uint64) []byte {
	h := make([]byte, segmentHeaderSize)
	copy(h, segmentMagic)
	binary.LittleEndian.PutUint16(h[8:], FormatVersion)
	// h[10:12] flags, h[20:28] reserved: zero.
	binary.LittleEndian.PutUint64(h[12:], seq)
	binary.LittleEndian.PutUint32(h[28:], crc32.Checksum(h[:28], castagnoli))
	return h
}

// decodeSegmentHeader validates h and returns the segment sequence.
func decodeSegmentHeader(h []byte) (uint64, error) {
	if len(h) < segmentHeaderSize {
		return 0, fmt.Errorf("store: segment header: %w", errShortFrame)
	}
	if string(h[:8]) != segmentMagic {
		return 0, errors.New("store: segment header: bad magic")
	}
	if crc32.Checksum(h[:28], castagnoli) != binary.LittleEndian.Uint32(h[28:]) {
		return 0, fmt.Errorf("store: segment header: %w", errBadCRC)
	}
	if v := binary.LittleEndian.Uint16(h[8:]); v != FormatVersion {
		return 0, fmt.Errorf("store: segment header: unsupported version %d", v)
	}
	return binary.LittleEndian.Uint64(h[12:]), nil
}

func segmentName(seq uint64) string { return fmt.Sprintf("%020d%s", seq, segmentSuffix) }
