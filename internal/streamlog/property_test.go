package streamlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

type modelRec struct {
	ts      int64
	payload []byte
}

// TestProperty runs random operations (appends of random sizes with
// timestamps that sometimes go back, restarts, crashes, retention,
// consumer positions, readers at random positions) against a model and
// checks the stream agrees with it after every step.
func TestProperty(t *testing.T) {
	for seed := range uint64(12) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runProperty(t, seed) })
	}
}

func runProperty(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	clock := &fakeClock{t: epoch}
	opts := Options{
		MaxSegmentBytes: int64(300 + rng.IntN(3000)),
		IndexInterval:   int64(50 + rng.IntN(500)),
		MaxBatchBytes:   200 + rng.IntN(2000),
		Clock:           clock.Now,
	}
	if seed%3 == 1 {
		opts.MaxBytes = 4000
	}
	if seed%3 == 2 {
		opts.MaxAge = 10 * time.Minute
	}
	fs := NewMemFS()
	s := openT(t, fs, opts)
	defer func() { s.Close() }()
	var recs []modelRec
	var lastTS int64
	positions := map[string]uint64{}
	tail, err := s.NewReader(Next())
	if err != nil {
		t.Fatal(err)
	}
	tailNext := uint64(0)

	checkReader := func(p Position, wantFrom uint64) {
		t.Helper()
		got := readAllFrom(t, s, p)
		st := s.Stats()
		if uint64(len(got)) != st.NextOffset-wantFrom {
			t.Fatalf("%v: read %d records, want %d..%d", p, len(got), wantFrom, st.NextOffset)
		}
		for i, g := range got {
			m := recs[wantFrom+uint64(i)]
			if g.off != wantFrom+uint64(i) || g.ts.UnixNano() != m.ts || !bytes.Equal(g.rec, m.payload) {
				t.Fatalf("%v: record %d is offset %d ts %d %q; want ts %d %q", p, i, g.off, g.ts.UnixNano(), g.rec, m.ts, m.payload)
			}
		}
	}

	for step := range 300 {
		switch op := rng.IntN(20); {
		case op < 10: // append, sometimes concurrently in one chunk
			k := 1 + rng.IntN(4)
			clock.Add(time.Duration(rng.IntN(120)) * time.Second)
			ts := clock.Now()
			if rng.IntN(5) == 0 {
				ts = ts.Add(-time.Hour) // goes back: stored as the newest
			}
			batch := make([][]byte, k)
			for i := range batch {
				batch[i] = bytes.Repeat([]byte{byte(len(recs) + i)}, rng.IntN(200))
			}
			first, err := s.Append(batch, ts)
			if err != nil {
				t.Fatal(err)
			}
			if first != uint64(len(recs)) {
				t.Fatalf("step %d: append got offset %d, want %d", step, first, len(recs))
			}
			lastTS = max(lastTS, ts.UnixNano())
			for _, b := range batch {
				recs = append(recs, modelRec{ts: lastTS, payload: b})
			}
		case op < 11: // restart
			tail.Close()
			s.Close()
			s = openT(t, fs, opts)
			tail, _ = s.NewReader(AtOffset(tailNext))
		case op < 12: // power loss: everything appended was acknowledged
			tail.Close()
			s.Close()
			fs = fs.Crash(rng)
			s = openT(t, fs, opts)
			if rep := s.Report(); len(rep.Corruptions) != 0 {
				t.Fatalf("step %d: crash left damage %+v", step, rep.Corruptions)
			}
			tail, _ = s.NewReader(AtOffset(tailNext))
		case op < 13:
			clock.Add(time.Duration(rng.IntN(10)) * time.Minute)
			if _, err := s.ApplyRetention(); err != nil {
				t.Fatal(err)
			}
		case op < 15: // consumer positions
			name := fmt.Sprint("c", rng.IntN(4))
			if rng.IntN(4) == 0 {
				delete(positions, name)
				if err := s.DeleteOffset(name); err != nil {
					t.Fatal(err)
				}
			} else {
				v := rng.Uint64N(uint64(len(recs) + 1))
				positions[name] = v
				if err := s.StoreOffset(name, v); err != nil {
					t.Fatal(err)
				}
			}
		case op < 17: // reader from a random offset
			st := s.Stats()
			off := rng.Uint64N(uint64(len(recs)) + 3)
			checkReader(AtOffset(off), min(max(off, st.FirstOffset), st.NextOffset))
		case op < 18: // reader from a random time
			if len(recs) == 0 {
				break
			}
			st := s.Stats()
			at := recs[rng.IntN(len(recs))].ts + int64(rng.IntN(3)-1)
			want := st.NextOffset
			for i := st.FirstOffset; i < st.NextOffset; i++ {
				if recs[i].ts >= at {
					want = i
					break
				}
			}
			checkReader(AtTime(time.Unix(0, at)), want)
		default: // the tailing reader reads what is new
			for {
				off, _, rec, err := tail.Next()
				if errors.Is(err, ErrCaughtUp) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if off < tailNext || !bytes.Equal(rec, recs[off].payload) {
					t.Fatalf("step %d: tail read offset %d after %d", step, off, tailNext)
				}
				if off != tailNext && off != s.Stats().FirstOffset {
					t.Fatalf("step %d: tail skipped from %d to %d", step, tailNext, off)
				}
				tailNext = off + 1
			}
		}
		st := s.Stats()
		if st.NextOffset != uint64(len(recs)) {
			t.Fatalf("step %d: next offset %d, model %d", step, st.NextOffset, len(recs))
		}
		if opts.MaxBytes == 0 && opts.MaxAge == 0 && st.FirstOffset != 0 {
			t.Fatalf("step %d: first offset %d without retention", step, st.FirstOffset)
		}
		if opts.MaxAge > 0 && st.Segments > 1 && st.FirstOffset > 0 {
			// What was deleted was older than MaxAge when retention ran.
			if recs[st.FirstOffset-1].ts >= clock.Now().UnixNano() {
				t.Fatalf("step %d: age retention deleted a record from the future", step)
			}
		}
		got := s.Offsets()
		if len(got) != len(positions) {
			t.Fatalf("step %d: positions %v, model %v", step, got, positions)
		}
		for k, v := range positions {
			if got[k] != v {
				t.Fatalf("step %d: positions %v, model %v", step, got, positions)
			}
		}
	}
	tail.Close()
	st0 := s.Stats()
	t.Logf("%d records, first retained %d, %d segments, %d deleted since the last open", len(recs), st0.FirstOffset, st0.Segments, st0.Deleted)
	// Finally everything retained reads back from the start.
	st := s.Stats()
	checkReader(First(), st.FirstOffset)
	if opts.MaxBytes > 0 && st.Bytes > opts.MaxBytes+opts.MaxSegmentBytes+int64(opts.MaxBatchBytes)+1024 {
		t.Fatalf("size retention let the stream grow to %d bytes", st.Bytes)
	}
}

// FuzzRecover opens a stream whose only segment holds arbitrary bytes
// after a valid header (as a damaged disk could leave it): Open must not
// panic, must cut or report what it cannot read, and the stream must then
// append and read back consistently.
func FuzzRecover(f *testing.F) {
	f.Add(buildChunk(0, 1, []byte("a")), []byte(nil))
	f.Add(append(buildChunk(0, 1, []byte("a")), buildChunk(1, 2, []byte("b"), []byte("c"))...), []byte(nil))
	f.Add(append(buildChunk(0, 1, []byte("a")), 0, 0, 0), appendIndexEntry(encodeFileHeader(indexMagic, 0),
		indexEntry{offset: 0, ts: 1, pos: fileHeaderSize}))
	f.Add([]byte{1, 2, 3}, []byte("junk"))
	f.Fuzz(func(t *testing.T, body, idx []byte) {
		fs := NewMemFS()
		fs.MkdirAll(testDir, 0o755)
		seg := append(encodeFileHeader(segmentMagic, 0), body...)
		for name, data := range map[string][]byte{segmentName(0): seg, indexName(0): idx} {
			f, _ := fs.OpenFile(testDir+"/"+name, os.O_RDWR|os.O_CREATE, 0o644)
			f.Write(data)
			f.Sync()
			f.Close()
		}
		fs.SyncDir(testDir)
		s, err := Open(testDir, Options{FS: fs, IndexInterval: 64})
		if err != nil {
			return
		}
		defer s.Close()
		st := s.Stats()
		r, _ := s.NewReader(First())
		n := uint64(0)
		for {
			off, _, _, err := r.Next()
			if err != nil {
				break
			}
			if off >= st.NextOffset {
				t.Fatalf("read offset %d past next %d", off, st.NextOffset)
			}
			n++
		}
		r.Close()
		first, err := s.Append([][]byte{[]byte("new")}, epoch)
		if err != nil || first != st.NextOffset {
			t.Fatalf("append after recovery: %d %v (next %d)", first, err, st.NextOffset)
		}
		got := readAllFrom(t, s, AtOffset(first))
		if len(got) != 1 || string(got[0].rec) != "new" {
			t.Fatalf("appended record reads back as %v", got)
		}
	})
}
