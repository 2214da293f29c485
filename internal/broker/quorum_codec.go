package broker

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The binary form of a QuorumOp in a Raft log entry (the hot path: one per
// publish and per settlement, so no JSON and no base64):
//
//	op byte | vhost | queue | node | boot uvarint | except-boot uvarint |
//	consumer uvarint | prefetch uvarint | meta | body | n uvarint | n ids
//	(uvarint) | how byte
//
// where a string or byte field is a uvarint length and the bytes.

var qopCodes = []string{qopEnqueue, qopAttach, qopDetach, qopSettle, qopGone, qopGet} // append only: the index is in the log

var errBadQuorumOp = errors.New("malformed quorum op")

// AppendQuorumOp appends op's binary form to b.
func AppendQuorumOp(b []byte, op QuorumOp) []byte {
	code := byte(0xff)
	for i, c := range qopCodes {
		if c == op.Op {
			code = byte(i)
		}
	}
	b = append(b, code)
	b = appendStr(b, op.VHost)
	b = appendStr(b, op.Queue)
	b = appendStr(b, op.Node)
	b = binary.AppendUvarint(b, op.Boot)
	b = binary.AppendUvarint(b, op.ExceptBoot)
	b = binary.AppendUvarint(b, op.Consumer)
	b = binary.AppendUvarint(b, uint64(max(op.Prefetch, 0)))
	b = binary.AppendUvarint(b, uint64(len(op.Meta)))
	b = append(b, op.Meta...)
	b = binary.AppendUvarint(b, uint64(len(op.Body)))
	b = append(b, op.Body...)
	b = binary.AppendUvarint(b, uint64(len(op.IDs)))
	for _, id := range op.IDs {
		b = binary.AppendUvarint(b, id)
	}
	return append(b, byte(op.How))
}

// ReadQuorumOp parses one op from the front of b and returns the rest.
// Byte fields alias b.
func ReadQuorumOp(b []byte) (QuorumOp, []byte, error) {
	r := &metaReader{b: b}
	var op QuorumOp
	code := r.byte()
	if r.err == nil && int(code) >= len(qopCodes) {
		return op, nil, fmt.Errorf("%w: unknown op %d", errBadQuorumOp, code)
	}
	if r.err == nil {
		op.Op = qopCodes[code]
	}
	op.VHost, op.Queue, op.Node = r.str(), r.str(), r.str()
	op.Boot, op.ExceptBoot, op.Consumer = r.uvarint(), r.uvarint(), r.uvarint()
	prefetch := r.uvarint()
	if prefetch > 1<<31 {
		return op, nil, fmt.Errorf("%w: prefetch %d", errBadQuorumOp, prefetch)
	}
	op.Prefetch = int(prefetch)
	op.Meta = r.bytes(r.uvarint())
	op.Body = r.bytes(r.uvarint())
	n := r.uvarint()
	if n > uint64(len(r.b)) { // every id takes a byte at least
		return op, nil, fmt.Errorf("%w: %d ids", errBadQuorumOp, n)
	}
	if n > 0 {
		op.IDs = make([]uint64, n)
		for i := range op.IDs {
			op.IDs[i] = r.uvarint()
		}
	}
	op.How = int(r.byte())
	if r.err != nil {
		return op, nil, fmt.Errorf("%w: %w", errBadQuorumOp, r.err)
	}
	if len(op.Meta) == 0 {
		op.Meta = nil
	}
	if len(op.Body) == 0 {
		op.Body = nil
	}
	return op, r.b, nil
}
