// Package streamlog is the storage of Herald's streams: for each stream
// one directory holding an append-only, segmented log of records numbered
// from offset 0, one more per record, with a sparse index per segment,
// retention by size and age, and the stored positions of named consumers.
// Appends are group-committed: every appender that arrives while a chunk
// is being written and fsynced joins the next chunk, which costs one write
// and one fsync. Readers read from disk through a bounded window, so a
// stream is bounded by the disk, not by memory. The package depends on
// the standard library only and reaches the disk through the small FS
// interface, so crashes and I/O errors are unit tests (see MemFS).
//
// # Use
//
//	s, err := streamlog.Open(dir, streamlog.Options{MaxBytes: 10 << 30, MaxAge: 7 * 24 * time.Hour})
//	s.AppendOneAsync(body, time.Now(), func(off uint64, err error) { // or AppendAsync(recs, ...)
//		// nil: durable (fsynced) at offset off -> send the confirm
//	})
//	r, err := s.NewReader(streamlog.First()) // or Last(), Next(), AtOffset(n), AtTime(t)
//	for {
//		off, ts, rec, err := r.NextWait(ctx) // rec is valid until the next call
//		...
//	}
//	err = s.StoreOffset("consumer-a", off+1) // survives restart and kill -9
//
// Timestamps never go back: an append stamped before the newest stored
// record is stored with that record's timestamp, so that a seek by time
// is a binary search. Readers see only durable records, unless
// Options.ReadUnsynced shows them each chunk once it is written, before its
// fsync (appenders are answered after the fsync either way). A reader
// positioned before the retained range starts at the first retained
// record; one past the end starts at the next record appended.
//
// # Directory
//
//	00000000000000000000.seg   segment: records from offset 0
//	00000000000000000000.idx   its sparse index
//	00000000000000004711.seg   the next segment starts at offset 4711
//	00000000000000004711.idx
//	offsets.log                stored consumer positions
//
// Segment and index files are named by the offset of their first record,
// in decimal, zero-padded to 20 digits so that name order is offset order.
// Only the last segment (the active one) is written. A new one is started
// when the next chunk would grow the active one past
// Options.MaxSegmentBytes; a chunk is never split.
//
// All integers are little-endian. CRCs are CRC-32C (Castagnoli). The
// constants in format.go are frozen: changing one needs a new
// FormatVersion and a reader for the old one.
//
// # File header (segment, index and offsets file)
//
//	 0               8      10     12              20              28     32
//	+---------------+------+------+---------------+---------------+------+
//	| magic         | ver  | flags| first offset  | reserved      | crc  |
//	|               | u16=1| u16=0| u64           | 8 bytes, zero | u32  |
//	+---------------+------+------+---------------+---------------+------+
//
// magic is "HRLDSTRM" (segment), "HRLDSIDX" (index) or "HRLDSOFF"
// (offsets.log, first offset 0). The CRC covers bytes 0..27. The first
// offset repeats the file name.
//
// # Segment: header, then chunks
//
// A chunk is what one group commit writes with one write and one fsync
// (its index entry, if any, is written between the two):
//
//	 0        4        8                16               24       28       32
//	+--------+--------+----------------+----------------+--------+--------+
//	| length | crc    | first offset   | first timestamp| count  | flags  |
//	| u32    | u32    | u64            | i64 unix ns    | u32>=1 | u32=0  |
//	+--------+--------+----------------+----------------+--------+--------+
//	| record | record | ... (count records)                               |
//
//	record:
//	 0        4                12
//	+--------+----------------+-------------------------+
//	| length | timestamp      | payload (length bytes)  |
//	| u32    | i64 unix ns    |                         |
//	+--------+----------------+-------------------------+
//
// length counts the chunk's bytes after the crc field; crc covers those
// same bytes. The records fill the chunk exactly; the first record's
// timestamp equals the chunk's and no record is older than the one before.
// The chunk's records have the offsets first .. first+count-1. A length
// of 0 or a count of 0 is never valid, so zero-filled space never parses
// as a chunk. A chunk is atomic: it is recovered whole or not at all, and
// one AppendAsync call is never split between chunks.
//
// # Index: header, then entries
//
//	 0                8                16               24       28       32
//	+----------------+----------------+----------------+--------+--------+
//	| offset         | timestamp      | position       | zero   | crc    |
//	| u64            | i64 unix ns    | u64            | u32=0  | u32    |
//	+----------------+----------------+----------------+--------+--------+
//
// An entry says that the chunk starting at byte position of the segment
// begins with offset and is stamped timestamp; crc covers bytes 0..27.
// The first entry is the segment's first chunk; then one at most every
// Options.IndexInterval bytes. Entries are strictly increasing in offset
// and position. Index writes are not fsynced one by one (the index of a
// closed segment is fsynced when the segment closes): recovery checks the
// index and rebuilds what is missing or damaged from the segment.
//
// # offsets.log: header, then frames
//
//	 0        4        8      9                17
//	+--------+--------+------+----------------+----------------------+
//	| length | crc    | kind | offset         | consumer name        |
//	| u32    | u32    | u8   | u64            | (length-9 bytes)     |
//	+--------+--------+------+----------------+----------------------+
//
// kind 1 stores offset as the name's position, kind 2 deletes it (offset
// 0). length counts the bytes after crc; crc covers them. The newest frame
// for a name wins. Frames are appended and fsynced by the committer, in
// the same round as a chunk, so a torn final frame only loses that update.
// The file is rewritten (offsets.tmp, fsync, rename, directory fsync) when
// most of it is superseded.
//
// # Recovery
//
// Open lists the directory; an index without a segment is removed. For
// each segment it loads the index's valid prefix (entries checked by CRC,
// order and position inside the file) and then reads and checks every
// chunk from the last entry to the end: so a restart reads little more
// than the index files and the tail written since their last entries.
// Chunk N+1 is written only after chunk N's fsync returned, and a segment
// is closed only after the next one exists, so only the last chunk of the
// last segment can be torn: a damaged chunk there with no valid chunk
// after it is cut (the file is truncated and fsynced). A damaged chunk
// followed by a valid one is corruption: it is reported and skipped, and
// its offsets are missing. A damaged segment header is reported and the
// segment skipped, never deleted. Readers that meet a damaged chunk skip
// it the same way, log it and count it (Stats.Corrupt).
//
// # Retention
//
// After a segment rolls, and when ApplyRetention is called, the oldest
// closed segments are deleted while the stream is larger than
// Options.MaxBytes or their newest record is older than Options.MaxAge.
// The active segment is never deleted. A deleted segment leaves the
// stream's list first, then its files are removed and the directory
// fsynced; a reader that has it open finishes it (its disk space comes
// back when the reader moves on), then continues at the first retained
// record.
//
// # Failure
//
// After a failed write or fsync the stream refuses all appends and
// position updates (the page cache state is unknown); the owner must
// Close and Open it again, which recovers from what is on disk. A full
// disk is such a failure: the broker's disk alarm is meant to block
// publishers before it.
package streamlog
