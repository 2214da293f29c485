package streamlog

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"testing"
)

func buildChunk(first uint64, ts int64, recs ...[]byte) []byte {
	var c chunkBuilder
	c.reset(nil, first, ts)
	for i, r := range recs {
		c.add(ts+int64(i), r)
	}
	return bytes.Clone(c.finish())
}

// TestChunkGolden freezes the chunk encoding: a change here is a format
// change and needs a new FormatVersion.
func TestChunkGolden(t *testing.T) {
	got := buildChunk(5, 0x0102030405060708, []byte("hi"), []byte{})
	want := "" +
		"32000000" + // length: 24 + 14 + 12
		"%s" + // crc, checked below
		"0500000000000000" + // first offset
		"0807060504030201" + // first timestamp
		"02000000" + "00000000" + // count, flags
		"02000000" + "0807060504030201" + "6869" + // record 0: len 2, ts, "hi"
		"00000000" + "0907060504030201" // record 1: len 0, ts+1
	crcHex := hex.EncodeToString(got[4:8])
	if hx := hex.EncodeToString(got); hx != fmt.Sprintf(want, crcHex) {
		t.Fatalf("chunk encoding changed:\n got %s\nwant %s", hx, fmt.Sprintf(want, crcHex))
	}
	h, err := decodeChunkHeader(got)
	if err != nil || h.first != 5 || h.count != 2 || h.size() != int64(len(got)) {
		t.Fatalf("decode: %+v %v", h, err)
	}
	if err := checkChunk(h, got); err != nil {
		t.Fatal(err)
	}
	if chunkLastTS(h, got) != 0x0102030405060709 {
		t.Fatal("last timestamp")
	}
	hdr := encodeFileHeader(segmentMagic, 7)
	if hex.EncodeToString(hdr[:28]) != "48524c445354524d"+"0100"+"0000"+"0700000000000000"+"0000000000000000" {
		t.Fatalf("segment header changed: %x", hdr)
	}
	e := appendIndexEntry(nil, indexEntry{offset: 1, ts: 2, pos: 32})
	if hex.EncodeToString(e[:28]) != "0100000000000000"+"0200000000000000"+"2000000000000000"+"00000000" {
		t.Fatalf("index entry changed: %x", e)
	}
}

func TestChunkRejects(t *testing.T) {
	good := buildChunk(1, 10, []byte("abc"))
	h, _ := decodeChunkHeader(good)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 1
		bh, err := decodeChunkHeader(bad)
		if err != nil {
			continue
		}
		if bh.size() != int64(len(bad)) {
			continue // a different length: the caller reads other bytes
		}
		if checkChunk(bh, bad) == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	if _, err := decodeChunkHeader(make([]byte, chunkHeaderSize)); err == nil {
		t.Fatal("zero-filled space parsed as a chunk")
	}
	if err := checkChunk(h, good); err != nil {
		t.Fatal(err)
	}
}

// FuzzChunk feeds arbitrary bytes to the chunk decoder, as a reader or
// recovery would find them on a damaged disk: no panic, no read past the
// input, and what passes decodes into records that fill the chunk exactly.
func FuzzChunk(f *testing.F) {
	f.Add(buildChunk(0, 1, []byte("x")))
	f.Add(buildChunk(1<<40, -5, []byte("hello"), []byte{}, bytes.Repeat([]byte{7}, 300)))
	f.Add(make([]byte, chunkHeaderSize))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeChunkHeader(b)
		if err != nil || h.size() > int64(len(b)) {
			return
		}
		b = b[:h.size()]
		if checkChunk(h, b) != nil {
			return
		}
		p := b[chunkHeaderSize:]
		prev := h.firstTS
		for i := uint32(0); i < h.count; i++ {
			ts, rec, n := decodeRecord(p)
			if ts < prev || len(rec) != n-recordHeaderSize {
				t.Fatalf("record %d: ts %d after %d", i, ts, prev)
			}
			prev = ts
			p = p[n:]
		}
		if len(p) != 0 || chunkLastTS(h, b) != prev {
			t.Fatalf("%d bytes left after %d records", len(p), h.count)
		}
		// Re-encoding what was decoded gives the same bytes.
		var c chunkBuilder
		c.reset(nil, h.first, h.firstTS)
		for p := b[chunkHeaderSize:]; len(p) > 0; {
			ts, rec, n := decodeRecord(p)
			c.add(ts, rec)
			p = p[n:]
		}
		if !bytes.Equal(c.finish(), b) {
			t.Fatal("re-encoding differs")
		}
	})
}

// FuzzIndex feeds arbitrary bytes as an index file: decodeIndex returns a
// strictly ordered prefix starting at the segment's first chunk.
func FuzzIndex(f *testing.F) {
	idx := encodeFileHeader(indexMagic, 10)
	idx = appendIndexEntry(idx, indexEntry{offset: 10, ts: 5, pos: fileHeaderSize})
	idx = appendIndexEntry(idx, indexEntry{offset: 20, ts: 6, pos: 900})
	f.Add(idx, uint64(10))
	f.Add(idx[:50], uint64(10))
	f.Add(idx, uint64(11))
	f.Add([]byte("HRLDSIDX"), uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, first uint64) {
		entries, clean := decodeIndex(b, first)
		if clean && len(b) != fileHeaderSize+len(entries)*indexEntrySize {
			t.Fatalf("clean index of %d bytes has %d entries", len(b), len(entries))
		}
		for i, e := range entries {
			if i == 0 && (e.offset != first || e.pos != fileHeaderSize) {
				t.Fatalf("first entry %+v for segment %d", e, first)
			}
			if i > 0 && (e.offset <= entries[i-1].offset || e.pos <= entries[i-1].pos || e.ts < entries[i-1].ts) {
				t.Fatalf("entries out of order: %+v", entries)
			}
			if got, err := decodeIndexEntry(appendIndexEntry(nil, e)); err != nil || got != e {
				t.Fatalf("entry %+v does not round-trip: %+v %v", e, got, err)
			}
		}
	})
}

// FuzzOffsetFrame feeds arbitrary bytes as offsets.log frames.
func FuzzOffsetFrame(f *testing.F) {
	f.Add(appendOffsetFrame(nil, offsetKindStore, "consumer-1", 42))
	f.Add(appendOffsetFrame(nil, offsetKindDelete, "x", 0))
	f.Add([]byte{9, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, name, off, n, err := decodeOffsetFrame(b)
		if err != nil {
			return
		}
		if n > len(b) || !bytes.Equal(appendOffsetFrame(nil, kind, name, off), b[:n]) {
			t.Fatalf("frame does not round-trip: kind %d name %q offset %d size %d", kind, name, off, n)
		}
	})
}
