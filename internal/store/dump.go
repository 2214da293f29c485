package store

import (
	"fmt"
	"io"
	"os"
)

// Dump writes a human-readable listing of the segments in dir and of every
// record in them, for `herald store dump`. It only reads: a torn tail or a
// corrupt record is listed, not repaired. Bodies are summarised by size.
func Dump(w io.Writer, dir string) error { return DumpFS(w, OSFS{}, dir) }

// DumpFS is Dump on any FS.
func DumpFS(w io.Writer, fs FS, dir string) error {
	seqs, err := listSegments(fs, dir)
	if err != nil {
		return err
	}
	for i, seq := range seqs {
		name := segmentName(seq)
		f, err := fs.OpenFile(join(dir, name), os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		data, err := readAll(f)
		f.Close()
		if err != nil {
			return err
		}
		hseq, herr := decodeSegmentHeader(data)
		if herr != nil {
			fmt.Fprintf(w, "segment %s  %d bytes  BAD HEADER: %v\n", name, len(data), herr)
			continue
		}
		fmt.Fprintf(w, "segment %s  seq=%d version=%d  %d bytes\n", name, hseq, FormatVersion, len(data))
		dumpRecords(w, data, i == len(seqs)-1)
	}
	return nil
}

func dumpRecords(w io.Writer, data []byte, last bool) {
	pos := int64(segmentHeaderSize)
	for pos < int64(len(data)) {
		r, n, err := decodeFrame(data[pos:])
		if err != nil {
			next := resync(data, pos+1)
			if next < 0 {
				what := "CORRUPT"
				if last {
					what = "TORN TAIL"
				}
				fmt.Fprintf(w, "  @%-10d %s: %v (%d bytes to end)\n", pos, what, err, int64(len(data))-pos)
				return
			}
			fmt.Fprintf(w, "  @%-10d CORRUPT: %v (%d bytes skipped)\n", pos, err, next-pos)
			pos = next
			continue
		}
		fmt.Fprintf(w, "  @%-10d %s\n", pos, describe(&r))
		pos += int64(n)
	}
}

func describe(r *Record) string {
	switch r.Kind {
	case KindMessage:
		return fmt.Sprintf("message     id=%d meta=%dB body=%dB", r.MessageID, len(r.Meta), len(r.Body))
	case KindEnqueue:
		return fmt.Sprintf("enqueue     queue=%d id=%d seq=%d redelivered=%v", r.QueueID, r.MessageID, r.Seq, r.Redelivered)
	case KindAck:
		return fmt.Sprintf("ack         queue=%d id=%d", r.QueueID, r.MessageID)
	case KindRedelivered:
		return fmt.Sprintf("redelivered queue=%d id=%d", r.QueueID, r.MessageID)
	case KindQueueDelete:
		return fmt.Sprintf("queue-del   queue=%d", r.QueueID)
	case kindCommit:
		return fmt.Sprintf("commit      records=%d bytes=%d", r.Seq, r.MessageID)
	}
	return r.Kind.String()
}
