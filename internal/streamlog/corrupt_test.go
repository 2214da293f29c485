package streamlog

import (
	"errors"
	"path"
	"runtime"
	"testing"
	"time"
)

// chunkPositions returns the position of every chunk in a segment file.
func chunkPositions(t *testing.T, data []byte) []int64 {
	t.Helper()
	var out []int64
	for pos := int64(fileHeaderSize); pos < int64(len(data)); {
		h, err := decodeChunkHeader(data[pos:])
		if err != nil {
			t.Fatalf("chunk at %d: %v", pos, err)
		}
		out = append(out, pos)
		pos += h.size()
	}
	return out
}

// TestDamagedClosedSegment flips a byte inside a chunk of a closed
// segment, where recovery trusts the index: a reader skips to the next
// valid chunk, counts the damage and reads everything after it.
func TestDamagedClosedSegment(t *testing.T) {
	fs := NewMemFS()
	opts := Options{MaxSegmentBytes: 3000, IndexInterval: 300}
	s := openT(t, fs, opts)
	for i := range uint64(80) {
		mustAppend(t, s, epoch.Add(time.Duration(i)*time.Second), payload(i))
	}
	s.Close()
	p := path.Join(testDir, segmentName(0))
	data, _ := fs.ReadFile(p)
	pos := chunkPositions(t, data)
	data[pos[3]+chunkHeaderSize+5] ^= 0xff // inside chunk 3's first record
	fs.WriteFile(p, data)

	s = openT(t, fs, opts)
	defer s.Close()
	got := readAllFrom(t, s, First())
	if s.Stats().Corrupt != 1 {
		t.Fatalf("damage not counted: %+v", s.Stats())
	}
	if got[0].off != 0 || got[len(got)-1].off != 79 {
		t.Fatalf("read %d..%d", got[0].off, got[len(got)-1].off)
	}
	for _, g := range got {
		if g.off == 3 {
			t.Fatal("the damaged record was returned")
		}
	}
	if len(got) != 79 {
		t.Fatalf("%d records survived one damaged chunk", len(got))
	}
	checkRange(t, readAllFrom(t, s, AtOffset(40)), 40, 80)
}

// TestDamagedActiveSegment flips a byte in the middle of the last
// segment: recovery reports the damage, keeps the good chunks after it and
// appends continue.
func TestDamagedActiveSegment(t *testing.T) {
	fs := NewMemFS()
	s := openT(t, fs, Options{})
	for i := range uint64(20) {
		mustAppend(t, s, epoch, payload(i))
	}
	s.Close()
	p := path.Join(testDir, segmentName(0))
	data, _ := fs.ReadFile(p)
	pos := chunkPositions(t, data)
	data[pos[10]+chunkHeaderSize+3] ^= 0x01
	fs.WriteFile(p, data)
	fs.Remove(path.Join(testDir, indexName(0))) // scan it all
	fs.SyncDir(testDir)

	s = openT(t, fs, Options{})
	defer s.Close()
	rep := s.Report()
	if len(rep.Corruptions) != 1 || rep.Corruptions[0].Offset != pos[10] || rep.TruncatedBytes != 0 {
		t.Fatalf("report %+v", rep)
	}
	got := readAllFrom(t, s, First())
	if len(got) != 19 || got[10].off != 11 || got[18].off != 19 {
		t.Fatalf("read %d records: %v", len(got), got)
	}
	if first := mustAppend(t, s, epoch, payload(20)); first != 20 {
		t.Fatalf("append after damage got offset %d", first)
	}
}

// TestBadSegmentHeader: a closed segment whose header is damaged is
// reported and skipped (left on disk); the rest of the stream is readable.
func TestBadSegmentHeader(t *testing.T) {
	fs := NewMemFS()
	opts := Options{MaxSegmentBytes: 500}
	s := openT(t, fs, opts)
	for i := range uint64(30) {
		mustAppend(t, s, epoch, payload(i))
	}
	s.Close()
	p := path.Join(testDir, segmentName(0))
	data, _ := fs.ReadFile(p)
	data[1] = 'X'
	fs.WriteFile(p, data)
	s = openT(t, fs, opts)
	defer s.Close()
	if rep := s.Report(); len(rep.Corruptions) != 1 {
		t.Fatalf("report %+v", rep)
	}
	st := s.Stats()
	if st.FirstOffset == 0 || st.NextOffset != 30 {
		t.Fatalf("stats %+v", st)
	}
	checkRange(t, readAllFrom(t, s, First()), st.FirstOffset, 30)
	if _, err := fs.ReadFile(p); err != nil {
		t.Fatal("an unreadable segment was deleted")
	}
}

// TestReadBoundedMemory reads a 32 MiB stream on the real file system and
// checks that the reader allocates a bounded amount, not the stream.
func TestReadBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 32 MiB")
	}
	s, err := Open(t.TempDir(), Options{MaxSegmentBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := make([]byte, 1024)
	batch := make([][]byte, 256)
	for i := range batch {
		batch[i] = rec
	}
	const total = 32 << 10 // records
	for range total / len(batch) {
		if _, err := s.Append(batch, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.NewReader(First())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for {
		_, _, _, err := r.Next()
		if errors.Is(err, ErrCaughtUp) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	runtime.ReadMemStats(&after)
	if n != total {
		t.Fatalf("read %d records, want %d", n, total)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("reading %d MiB allocated %d bytes", total>>10, alloc)
	}
}
