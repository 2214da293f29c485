package store

import (
	"bytes"
	"encoding/hex"
	"hash/crc32"
	"slices"
	"testing"
)

// goldenFrames freeze the on-disk encoding: a change here is a format change
// and needs a new FormatVersion.
var goldenFrames = []struct {
	rec Record
	hex string
}{
	// len=15 crc kind=1 | id=1 | metalen=1 | "m" | "hi"
	{Record{Kind: KindMessage, MessageID: 1, Meta: []byte("m"), Body: []byte("hi")},
		"0f000000a19be29e01" + "0100000000000000" + "01000000" + "6d" + "6869"},
	// len=25 crc kind=2 | queue=2 | id=1 | seq=3 | flags=1
	{Record{Kind: KindEnqueue, QueueID: 2, MessageID: 1, Seq: 3, Redelivered: true},
		"19000000c715826302" + "0200000000000000" + "0100000000000000" + "0300000000000000" + "01"},
	{Record{Kind: KindAck, QueueID: 2, MessageID: 1},
		"1000000022d7089203" + "0200000000000000" + "0100000000000000"},
	{Record{Kind: KindRedelivered, QueueID: 2, MessageID: 1},
		"100000004eb45a0804" + "0200000000000000" + "0100000000000000"},
	{Record{Kind: KindQueueDelete, QueueID: 2},
		"0800000096866c0305" + "0200000000000000"},
	// commit: records=5, batch bytes=130
	{Record{Kind: kindCommit, Seq: 5, MessageID: 130},
		"0800000036ccce0f7f" + "05000000" + "82000000"},
}

const goldenHeader = "48524c444c4f4700" + "0100" + "0000" + "0100000000000000" + "0000000000000000" + "68dcc035"

func TestGoldenFormat(t *testing.T) {
	if got := hex.EncodeToString(encodeSegmentHeader(1)); got != goldenHeader {
		t.Fatalf("segment header = %s, want %s", got, goldenHeader)
	}
	if seq, err := decodeSegmentHeader(encodeSegmentHeader(42)); err != nil || seq != 42 {
		t.Fatalf("decode header = %d, %v", seq, err)
	}
	for _, g := range goldenFrames {
		b := appendFrame(nil, &g.rec)
		if got := hex.EncodeToString(b); got != g.hex {
			t.Errorf("%v frame = %s, want %s", g.rec.Kind, got, g.hex)
		}
		if crc32.Checksum(b[8:], crc32.MakeTable(crc32.Castagnoli)) != uint32(b[4])|uint32(b[5])<<8|uint32(b[6])<<16|uint32(b[7])<<24 {
			t.Errorf("%v: CRC does not cover kind+payload", g.rec.Kind)
		}
		r, n, err := decodeFrame(b)
		if err != nil || n != len(b) || !sameRecord(r, g.rec) {
			t.Errorf("decode %v = %+v, %d, %v", g.rec.Kind, r, n, err)
		}
		if frameSize(&g.rec) != len(b) {
			t.Errorf("frameSize(%v) = %d, encoded %d", g.rec.Kind, frameSize(&g.rec), len(b))
		}
	}
}

func sameRecord(a, b Record) bool {
	return a.Kind == b.Kind && a.QueueID == b.QueueID && a.MessageID == b.MessageID && a.Seq == b.Seq &&
		a.Redelivered == b.Redelivered && bytes.Equal(a.Meta, b.Meta) && bytes.Equal(a.Body, b.Body)
}

func TestDecodeRejects(t *testing.T) {
	good := appendFrame(nil, &goldenFrames[0].rec)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"short":     good[:5],
		"truncated": good[:len(good)-1],
		"zeros":     make([]byte, 64),
		"bad crc":   append(slices.Clone(good[:len(good)-1]), 'X'),
		"bad kind":  append(append(slices.Clone(good[:8]), 9), good[9:]...),
	} {
		if _, _, err := decodeFrame(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzDecodeFrame: the decoder never panics, never reads out of bounds and
// re-encodes what it accepts to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, g := range goldenFrames {
		b := appendFrame(nil, &g.rec)
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[len(b)/2:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeFrame(b)
		if err != nil {
			return
		}
		if n > len(b) || n < frameHeaderSize {
			t.Fatalf("size %d of %d bytes", n, len(b))
		}
		if again := appendFrame(nil, &r); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded %x, was %x", again, b[:n])
		}
	})
}

// FuzzScanSegment: recovery's scanner accepts any bytes without panicking
// and only hands out records that lie inside the data.
func FuzzScanSegment(f *testing.F) {
	seg := encodeSegmentHeader(1)
	for _, g := range goldenFrames {
		seg = appendFrame(seg, &g.rec)
	}
	f.Add(seg, true)
	f.Add(seg[:len(seg)/2], true)
	f.Add(seg[len(seg)/2:], false)
	f.Fuzz(func(t *testing.T, data []byte, last bool) {
		if len(data) < segmentHeaderSize {
			return
		}
		res := scanSegment(data, last)
		if res.truncateAt > int64(len(data)) {
			t.Fatalf("truncate at %d of %d", res.truncateAt, len(data))
		}
		for _, b := range res.batches {
			for _, it := range b.items {
				if it.off < segmentHeaderSize || it.off+it.size > int64(len(data)) {
					t.Fatalf("item at %d+%d outside %d bytes", it.off, it.size, len(data))
				}
				if res.truncateAt >= 0 && it.off >= res.truncateAt {
					t.Fatalf("item at %d beyond truncation %d", it.off, res.truncateAt)
				}
			}
		}
	})
}
