package streamlog

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// Consumer positions live in offsets.log: a header, then one frame per
// StoreOffset or DeleteOffset, appended and fsynced by the committer (many
// callers share one fsync). The newest frame for a name wins, so a torn
// final frame only loses that update, never the value before it. When the
// file grows past offsetsCompactMin and holds mostly superseded frames,
// the live positions are written to offsets.tmp, fsynced, renamed over
// offsets.log and the directory fsynced: a crash leaves the old file or the
// new one, both whole.
const offsetsCompactMin = 1 << 20 // Stream.offsetsCompactAt, but for tests

// offsetsFrameSize is the size of a frame storing name.
func offsetsFrameSize(name string) int64 { return int64(offsetFrameHeaderSize + len(name)) }

// writeOffsets appends and fsyncs offs; committer only.
func (s *Stream) writeOffsets(offs []*offsetReq) error {
	var buf []byte
	for _, r := range offs {
		buf = appendOffsetFrame(buf, r.kind, r.name, r.offset)
	}
	path := join(s.dir, offsetsName)
	if _, err := s.offsetsFile.Write(buf); err != nil {
		return fmt.Errorf("streamlog: write %s: %w", path, err)
	}
	if err := s.offsetsFile.Sync(); err != nil {
		return fmt.Errorf("streamlog: sync %s: %w", path, err)
	}
	s.offsetsSize += int64(len(buf))
	s.mu.Lock()
	for _, r := range offs {
		s.applyOffsetLocked(r.kind, r.name, r.offset)
	}
	s.mu.Unlock()
	return nil
}

// applyOffsetLocked updates the map and the live size; s.mu held (or
// recovery, before the committer starts).
func (s *Stream) applyOffsetLocked(kind byte, name string, offset uint64) {
	_, had := s.mu.offsets[name]
	switch kind {
	case offsetKindStore:
		s.mu.offsets[name] = offset
		if !had {
			s.offsetsLive += offsetsFrameSize(name)
		}
	case offsetKindDelete:
		delete(s.mu.offsets, name)
		if had {
			s.offsetsLive -= offsetsFrameSize(name)
		}
	}
}

// maybeCompactOffsets rewrites offsets.log when most of it is superseded.
func (s *Stream) maybeCompactOffsets() error {
	if s.offsetsSize < s.offsetsCompactAt || s.offsetsSize < 4*(s.offsetsLive+fileHeaderSize) {
		return nil
	}
	s.mu.Lock()
	buf := encodeFileHeader(offsetsMagic, 0)
	for name, off := range s.mu.offsets {
		buf = appendOffsetFrame(buf, offsetKindStore, name, off)
	}
	s.mu.Unlock()
	f, err := s.rewriteOffsets(buf)
	if err != nil {
		return err
	}
	s.offsetsFile.Close()
	s.offsetsFile, s.offsetsSize = f, int64(len(buf))
	return nil
}

// rewriteOffsets replaces offsets.log with buf (a header and frames)
// atomically and returns the new file open for appending.
func (s *Stream) rewriteOffsets(buf []byte) (File, error) {
	tmp, path := join(s.dir, offsetsTemp), join(s.dir, offsetsName)
	f, err := s.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("streamlog: create %s: %w", tmp, err)
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = s.fs.Rename(tmp, path)
	}
	if err == nil {
		err = s.fs.SyncDir(s.dir)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("streamlog: rewrite %s: %w", path, err)
	}
	return f, nil
}

// recoverOffsets loads offsets.log (creating it if missing). Damage with
// no good frame after it is a torn final write and is cut; damage followed
// by good frames is reported and skipped.
func (s *Stream) recoverOffsets() error {
	tmp, path := join(s.dir, offsetsTemp), join(s.dir, offsetsName)
	if err := s.fs.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("streamlog: remove %s: %w", tmp, err)
	}
	f, err := s.fs.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = s.rewriteOffsets(encodeFileHeader(offsetsMagic, 0))
		if err != nil {
			return err
		}
		s.offsetsFile, s.offsetsSize = f, fileHeaderSize
		return nil
	}
	if err != nil {
		return fmt.Errorf("streamlog: open %s: %w", path, err)
	}
	s.offsetsFile = f
	data, err := readAll(f)
	if err != nil {
		return fmt.Errorf("streamlog: read %s: %w", path, err)
	}
	if _, err := decodeFileHeader(data, offsetsMagic); err != nil {
		if len(data) >= fileHeaderSize {
			return fmt.Errorf("streamlog: %s: header: %w", path, err)
		}
		// Only a crash inside rewriteOffsets' first write leaves this,
		// and then the rename never happened; be safe anyway.
		f.Close()
		s.offsetsFile = nil
		f, err = s.rewriteOffsets(encodeFileHeader(offsetsMagic, 0))
		if err != nil {
			return err
		}
		s.offsetsFile, s.offsetsSize = f, fileHeaderSize
		return nil
	}
	pos, end := fileHeaderSize, len(data)
	for pos < end {
		kind, name, off, n, err := decodeOffsetFrame(data[pos:])
		if err == nil {
			s.applyOffsetLocked(kind, name, off)
			pos += n
			continue
		}
		next := pos + 1
		for ; next < end; next++ {
			if _, _, _, _, err := decodeOffsetFrame(data[next:]); err == nil {
				break
			}
		}
		if next < end {
			// Good frames follow: bit rot, not a torn write. Skip it.
			s.corruption(offsetsName, int64(pos), "damaged consumer position frame skipped")
			pos = next
			continue
		}
		s.log.Warn("streamlog: cutting torn tail", "file", path, "offset", pos, "bytes", end-pos)
		if err := f.Truncate(int64(pos)); err != nil {
			return fmt.Errorf("streamlog: truncate %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("streamlog: sync %s: %w", path, err)
		}
		s.report.TruncatedBytes += int64(end - pos)
		break
	}
	s.offsetsSize = int64(pos)
	return nil
}

func readAll(f File) ([]byte, error) {
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	data := make([]byte, size)
	n, err := f.ReadAt(data, 0)
	if err == io.EOF && int64(n) == size {
		err = nil
	}
	return data[:n], err
}
