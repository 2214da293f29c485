// Package store is Herald's durable message log: an append-only, segmented
// log of checksummed records, group-committed with one fsync per batch, from
// which the broker's durable state (which message sits in which queue, in
// which order) is rebuilt on start. It depends on the standard library only
// and reaches the disk through the small FS interface, so crashes and I/O
// errors are ordinary unit tests (see MemFS).
//
// # Use
//
//	l, report, err := store.Open(dir, store.Options{Logger: log})
//	for queueID, entries := range l.Recovered() { ... }   // in Seq order
//	meta, body, err := l.ReadMessage(id)                   // bodies read lazily
//	err = <-l.Append(                                      // one atomic unit
//		store.Record{Kind: store.KindMessage, MessageID: id, Meta: m, Body: b},
//		store.Record{Kind: store.KindEnqueue, QueueID: q, MessageID: id, Seq: s})
//	// nil: durable (fsynced) -> send the publisher confirm
//	l.Append(store.Record{Kind: store.KindAck, QueueID: q, MessageID: id})
//
// Message ids must be unique for the life of the log (MaxMessageID tells
// where to resume). A Message record should be appended in the same call as
// its Enqueues: a message that no Enqueue names is dropped by recovery.
//
// # Directory
//
// A log directory holds segment files named by their sequence number in
// decimal, zero-padded to 20 digits so that name order is log order:
//
//	00000000000000000001.seg
//	00000000000000000002.seg
//
// Only the highest-numbered segment (the active one) is ever written. A new
// segment is created when the next batch would grow the active one past
// Options.SegmentSize (64 MiB by default); a batch is never split, so one
// append larger than SegmentSize makes a larger segment.
//
// # Segment file
//
// All integers are little-endian. CRCs are CRC-32C (Castagnoli).
//
//	 0               8      10     12              20              28     32
//	+---------------+------+------+---------------+---------------+------+
//	| magic         | ver  | flags| sequence      | reserved      | crc  |
//	| "HRLDLOG\0"   | u16=1| u16=0| u64           | 8 bytes, zero | u32  |
//	+---------------+------+------+---------------+---------------+------+
//	| frame | frame | ... | commit frame | frame | ... | commit frame | ...
//
// The header CRC covers bytes 0..27. The sequence repeats the file name.
//
// # Frame
//
//	 0        4        8      9
//	+--------+--------+------+-------------------------+
//	| length | crc    | kind | payload (length bytes)  |
//	| u32    | u32    | u8   |                         |
//	+--------+--------+------+-------------------------+
//
// length counts the payload only; crc covers kind and payload. Kind 0 is
// never valid, so zero-filled space never parses as a record. Payloads:
//
//	kind 1 Message      | message id u64 | meta length u32 | meta | body (rest) |
//	kind 2 Enqueue      | queue id u64 | message id u64 | seq u64 | flags u8 (bit 0: redelivered) |
//	kind 3 Ack          | queue id u64 | message id u64 |
//	kind 4 Redelivered  | queue id u64 | message id u64 |
//	kind 5 QueueDelete  | queue id u64 |
//	kind 0x7f Commit    | record count u32 | batch length u32 (bytes of the batch's frames) |
//
// # Batches and the commit marker
//
// The committer goroutine takes every pending Append (up to
// Options.MaxBatchBytes), writes their frames followed by one Commit frame in
// a single write, fsyncs, and only then notifies the appenders. A lone
// appender waits for exactly one write+fsync, never for a timer; appenders
// that arrive during an fsync form the next batch. Recovery applies a batch
// only when it reads its Commit frame, so an Append is atomic. The committer
// writes batch N+1 only after batch N's fsync returned; hence after a crash
// only the final batch of the last segment can be incomplete.
//
// After a failed write or fsync the log refuses all further appends (the
// page cache state is unknown); the owner must Close and Open again.
//
// # Recovery
//
// Open reads the segments in order. A frame with a bad length, kind or CRC is
// damage; the scanner resynchronises on the next offset where a valid frame
// starts. Damage in the final batch of the last segment (or an unterminated
// final batch) is a torn tail: the file is truncated at the end of the last
// good batch. Damage anywhere else is corruption: it is logged with the
// segment name and offset, the bad record is skipped and everything else is
// recovered. A segment whose header is bad is reported and left untouched.
// The RecoveryReport counts queues, messages, bytes, time, corrupt records
// and truncated bytes; a progress line is logged every second.
//
// # Space
//
// The log tracks, per segment, the live records it defines: Message records
// of messages still enqueued somewhere, Enqueue records of unacked entries,
// the latest Redelivered record of a live entry. A record cancelling an entry
// (Ack, QueueDelete) in segment C pins C until every older segment holding a
// copy of the cancelled Enqueue is gone, or a recovery would resurrect the
// entry. A closed segment with nothing live and no pins is deleted (the
// directory is fsynced before the pins it held are released). Compact
// rewrites closed segments whose live bytes are below Options.CompactRatio of
// their size by appending their live records to the head, which lets them be
// deleted; it runs every Options.CompactInterval or when the broker calls it.
package store
