package streamlog

import (
	"errors"
	"io"
)

// windowSize is how much of a segment one read brings in: readers and
// recovery go through a segment in order, one pread per window rather than
// one per chunk, and never hold more than a window (or one larger chunk).
const windowSize = 256 << 10

// idleBufferBytes is the most an idle reader or committer keeps buffered:
// a broker may hold many streams and many tailing consumers.
const idleBufferBytes = 64 << 10

// window is a bounded read buffer over part of one file.
type window struct {
	f     File
	end   int64 // bytes of the file that may be read
	start int64 // file position of buf[0]
	buf   []byte
}

func (w *window) reset(f File, end int64) {
	w.f, w.end, w.start, w.buf = f, end, 0, w.buf[:0]
}

// bytes returns the n bytes at pos, reading them if the window does not
// hold them. The result aliases the window: valid until the next call.
func (w *window) bytes(pos int64, n int) ([]byte, error) {
	if pos >= w.start && pos+int64(n) <= w.start+int64(len(w.buf)) {
		return w.buf[pos-w.start:][:n], nil
	}
	if pos < 0 || pos+int64(n) > w.end {
		return nil, errShort
	}
	want := int64(max(n, windowSize))
	want = min(want, w.end-pos)
	if cap(w.buf) < int(want) || (cap(w.buf) > 4*windowSize && want <= windowSize) {
		// Grow for one large chunk; shrink back after it.
		w.buf = make([]byte, want)
	}
	m, err := w.f.ReadAt(w.buf[:want], pos)
	if m < n {
		w.buf = w.buf[:0]
		if err == nil || errors.Is(err, io.EOF) {
			err = errShort
		}
		return nil, err
	}
	w.start, w.buf = pos, w.buf[:m]
	return w.buf[:n], nil
}

// readChunk returns the chunk at pos (header decoded, CRC and records
// checked), aliasing the window.
func (w *window) readChunk(pos int64) (chunkHeader, []byte, error) {
	hb, err := w.bytes(pos, chunkHeaderSize)
	if err != nil {
		return chunkHeader{}, nil, err
	}
	h, err := decodeChunkHeader(hb)
	if err != nil {
		return chunkHeader{}, nil, err
	}
	if pos+h.size() > w.end {
		return chunkHeader{}, nil, errShort
	}
	b, err := w.bytes(pos, int(h.size()))
	if err != nil {
		return chunkHeader{}, nil, err
	}
	if err := checkChunk(h, b); err != nil {
		return chunkHeader{}, nil, err
	}
	return h, b, nil
}

// resync returns the position of the first valid chunk after pos whose
// first offset is at least minOffset, or -1. It scans byte by byte through
// the window: damage is rare, and this is bounded by the segment's size.
func (w *window) resync(pos int64, minOffset uint64) int64 {
	for p := pos + 1; p+chunkHeaderSize <= w.end; p++ {
		hb, err := w.bytes(p, chunkHeaderSize)
		if err != nil {
			return -1
		}
		if h, err := decodeChunkHeader(hb); err != nil || h.first < minOffset {
			continue
		}
		if _, _, err := w.readChunk(p); err == nil {
			return p
		}
	}
	return -1
}
