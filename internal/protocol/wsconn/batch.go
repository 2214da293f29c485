package wsconn

import (
	"net"
	"sync"
)

// readBufSize is the size of a borrowed read buffer.
const readBufSize = 4096

// inlineLimit: a payload part up to this size is copied next to its
// header; a larger one is written from where it is (writev).
const inlineLimit = 512

// Pool lends read buffers and write batches to the connections that
// share it (a server's). The zero Pool is ready to use.
type Pool struct {
	reads   sync.Pool // *[]byte of readBufSize
	batches sync.Pool // *Batch
}

func (p *Pool) getRead(n int) *[]byte {
	if n <= readBufSize {
		if b, _ := p.reads.Get().(*[]byte); b != nil {
			return b
		}
		n = readBufSize
	}
	b := make([]byte, n)
	return &b
}

func (p *Pool) putRead(b *[]byte) {
	if len(*b) == readBufSize {
		p.reads.Put(b)
	}
}

// maxPooledBatch: a batch whose buffer grew beyond this is not kept.
const maxPooledBatch = 256 << 10

// GetBatch borrows an empty Batch.
func (p *Pool) GetBatch() *Batch {
	if b, _ := p.batches.Get().(*Batch); b != nil {
		return b
	}
	return &Batch{buf: make([]byte, 0, 4096)}
}

// PutBatch returns a Batch (emptied).
func (p *Pool) PutBatch(b *Batch) {
	b.Reset()
	if cap(b.buf) <= maxPooledBatch {
		p.batches.Put(b)
	}
}

// Batch collects messages for one write: headers and small payload parts
// in one buffer, large parts referenced where they are (they must stay
// unchanged until the write).
type Batch struct {
	buf     []byte
	from    int // start of buf not yet in iov
	iov     net.Buffers
	scratch net.Buffers // the copy writev consumes
	n       int         // messages
	size    int         // bytes on the wire
}

// Add appends a message whose payload is head followed by tail.
func (b *Batch) Add(op Opcode, head, tail []byte) {
	b.Start(op, len(head)+len(tail))
	b.Append(head)
	b.Append(tail)
}

// Start begins a message of size payload bytes, which the following
// Appends supply.
func (b *Batch) Start(op Opcode, size int) {
	b.buf = appendHeader(b.buf, true, op, size)
	b.n++
	b.size += size + maxHeaderLen
}

// Append adds a part of the current message's payload: copied when it is
// small, else referenced (it must then stay unchanged until the write).
func (b *Batch) Append(p []byte) {
	if len(p) <= inlineLimit {
		b.buf = append(b.buf, p...)
		return
	}
	b.seal()
	b.iov = append(b.iov, p)
}

// Len is the number of messages in the batch.
func (b *Batch) Len() int { return b.n }

// Size is about the bytes the batch writes.
func (b *Batch) Size() int { return b.size }

// seal moves the unsent part of buf into iov; the capacity is cut so that
// later appends to buf cannot reach it.
func (b *Batch) seal() {
	if len(b.buf) > b.from {
		b.iov = append(b.iov, b.buf[b.from:len(b.buf):len(b.buf)])
		b.from = len(b.buf)
	}
}

// Reset empties the batch, dropping its references to payloads.
func (b *Batch) Reset() {
	clear(b.iov)
	b.iov = b.iov[:0]
	clear(b.scratch[:cap(b.scratch)])
	b.buf, b.from, b.n, b.size = b.buf[:0], 0, 0, 0
}
