package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// frameOffsets returns the offset of the Message frame of each id in data.
func frameOffsets(t testing.TB, data []byte) map[uint64]int64 {
	t.Helper()
	offs := map[uint64]int64{}
	for pos := int64(segmentHeaderSize); pos < int64(len(data)); {
		r, n, err := decodeFrame(data[pos:])
		if err != nil {
			t.Fatalf("undamaged segment unreadable at %d: %v", pos, err)
		}
		if r.Kind == KindMessage {
			offs[r.MessageID] = pos
		}
		pos += int64(n)
	}
	return offs
}

func firstSegment(t testing.TB, fs *MemFS) (string, []byte) {
	t.Helper()
	name := testDir + "/" + segmentName(1)
	data, err := fs.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return name, data
}

func fill(t testing.TB, fs *MemFS, opts Options, n uint64) {
	t.Helper()
	l, _ := openT(t, fs, opts)
	for id := uint64(1); id <= n; id++ {
		mustAppend(t, l, publish(id, id, 1)...)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTornTailCut(t *testing.T) {
	extra := map[string]func() []byte{
		"half frame": func() []byte {
			b := appendFrame(nil, &publish(99, 99, 1)[0])
			return b[:len(b)/2]
		},
		"batch without commit marker": func() []byte {
			var b []byte
			for _, r := range publish(99, 99, 1) {
				b = appendFrame(b, &r)
			}
			return b
		},
		"garbage": func() []byte { return []byte("\xff\x00\x00\x00garbage") },
	}
	for name, mk := range extra {
		t.Run(name, func(t *testing.T) {
			fs := NewMemFS()
			fill(t, fs, Options{}, 10)
			seg, data := firstSegment(t, fs)
			tail := mk()
			if err := fs.WriteFile(seg, append(data, tail...)); err != nil {
				t.Fatal(err)
			}
			l, rep := openT(t, fs, Options{})
			if rep.TruncatedBytes != int64(len(tail)) || rep.CorruptRecords != 0 {
				t.Fatalf("report %+v, want %d bytes truncated", rep, len(tail))
			}
			if got := recovered(l)[1]; len(got) != 10 {
				t.Fatalf("recovered %v", got)
			}
			mustAppend(t, l, publish(11, 11, 1)...)
			l.Close()
			l, rep = openT(t, fs, Options{})
			defer l.Close()
			if rep.TruncatedBytes != 0 || len(recovered(l)[1]) != 11 {
				t.Fatalf("after cut and append: %+v %v", rep, recovered(l))
			}
		})
	}
}

// TestDamagedLastBatchIsTorn: damage in the final batch of the last segment
// is what an interrupted write leaves (that batch was never acknowledged), so
// it is cut rather than reported, even when its commit marker made it to disk.
func TestDamagedLastBatchIsTorn(t *testing.T) {
	fs := NewMemFS()
	fill(t, fs, Options{}, 5)
	seg, data := firstSegment(t, fs)
	off := frameOffsets(t, data)[5]
	data[off+frameHeaderSize+15] ^= 0xff // inside message 5's meta
	fs.WriteFile(seg, data)
	l, rep := openT(t, fs, Options{})
	defer l.Close()
	if rep.CorruptRecords != 0 || rep.TruncatedBytes != int64(len(data))-off {
		t.Fatalf("report %+v, want the last batch (%d bytes) cut", rep, int64(len(data))-off)
	}
	if got := recovered(l)[1]; !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("recovered %v", got)
	}
}

func TestCorruptMiddleRecordSkipped(t *testing.T) {
	for _, damage := range []string{"body", "length"} {
		t.Run(damage, func(t *testing.T) {
			fs := NewMemFS()
			fill(t, fs, Options{}, 10)
			seg, data := firstSegment(t, fs)
			off := frameOffsets(t, data)[4]
			switch damage {
			case "body":
				data[len(appendFrame(nil, &publish(4, 4, 1)[0]))+int(off)-1] ^= 0x01
			case "length":
				binary.LittleEndian.PutUint32(data[off:], 0xfffffff0)
			}
			fs.WriteFile(seg, data)
			l, rep := openT(t, fs, Options{})
			defer l.Close()
			want := Corruption{Segment: segmentName(1), Offset: off, Reason: "bad frame (length, kind or CRC)"}
			if len(rep.Corruptions) != 1 || rep.Corruptions[0] != want || rep.CorruptRecords != 1 {
				t.Fatalf("corruptions %+v, want %+v", rep.Corruptions, want)
			}
			if rep.TruncatedBytes != 0 || rep.Orphans != 1 {
				t.Fatalf("report %+v", rep)
			}
			got := recovered(l)[1]
			if !slices.Equal(got, []uint64{1, 2, 3, 5, 6, 7, 8, 9, 10}) {
				t.Fatalf("recovered %v", got)
			}
			checkBodies(t, l, map[uint64][]uint64{1: got})
		})
	}
}

func TestCorruptOlderSegment(t *testing.T) {
	fs := NewMemFS()
	opts := Options{SegmentSize: 1024}
	fill(t, fs, opts, 60)
	seg, data := firstSegment(t, fs)
	offs := frameOffsets(t, data)
	// The last message of the first segment sits in its final batch: in a
	// closed segment that is corruption, not a torn tail.
	var lastID uint64
	for id := range offs {
		lastID = max(lastID, id)
	}
	data[offs[lastID]+frameHeaderSize+2] ^= 0x80
	fs.WriteFile(seg, data)
	l, rep := openT(t, fs, opts)
	defer l.Close()
	if len(rep.Corruptions) != 1 || rep.Corruptions[0].Offset != offs[lastID] || rep.TruncatedBytes != 0 {
		t.Fatalf("report %+v", rep)
	}
	got := recovered(l)[1]
	if len(got) != 59 || slices.Contains(got, lastID) {
		t.Fatalf("recovered %d: %v", len(got), got)
	}
}

func TestBadSegmentHeaderLeftAlone(t *testing.T) {
	fs := NewMemFS()
	opts := Options{SegmentSize: 1024}
	fill(t, fs, opts, 40)
	seg, data := firstSegment(t, fs)
	data[0] = 'X'
	fs.WriteFile(seg, data)
	l, rep := openT(t, fs, opts)
	if len(rep.Corruptions) != 1 || rep.Corruptions[0].Segment != segmentName(1) {
		t.Fatalf("report %+v", rep)
	}
	mustAppend(t, l, publish(100, 100, 1)...)
	l.Close()
	if _, err := fs.ReadFile(seg); err != nil {
		t.Fatalf("unreadable segment was deleted: %v", err)
	}
}

// FuzzOpen damages a small log's segment and opens it: recovery must not
// fail or panic, and must accept appends afterwards.
func FuzzOpen(f *testing.F) {
	base := NewMemFS()
	fill(f, base, Options{}, 6)
	_, data := firstSegment(f, base)
	f.Add(uint16(40), byte(0xff), uint16(0))
	f.Add(uint16(len(data)-3), byte(1), uint16(2))
	f.Add(uint16(100), byte(0), uint16(50))
	f.Fuzz(func(t *testing.T, pos uint16, xor byte, cut uint16) {
		fs := base.Crash(nil)
		seg, d := firstSegment(t, fs)
		p := segmentHeaderSize + int(pos)%(len(d)-segmentHeaderSize)
		d[p] ^= xor
		d = d[:len(d)-int(cut)%(len(d)-segmentHeaderSize)]
		fs.WriteFile(seg, d)
		l, rep := openT(t, fs, Options{})
		defer l.Close()
		if rep.Entries > 6 {
			t.Fatalf("recovered %d entries from 6", rep.Entries)
		}
		ids := map[uint64][]uint64{}
		for q, es := range l.Recovered() {
			for _, e := range es {
				ids[q] = append(ids[q], e.MessageID)
			}
		}
		checkBodies(t, l, ids)
		mustAppend(t, l, publish(7, 7, 1)...)
		if fmt.Sprint(recovered(l)[1]) == "" {
			t.Fatal("append lost")
		}
	})
}
