package mqtt

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Read buffer sizes. An idle connection blocks in Read on its small inline
// buffer, so it holds no big buffer at all; a read that fills the small
// buffer means the client is streaming (a PUBACK flood, a publisher), and
// the reader switches to a pooled big buffer until it drains.
const (
	smallReadBuf = 256
	bigReadBuf   = 8 << 10
)

// readBufPool hands out big read buffers; it lives in the Handler so the
// package has no mutable state of its own.
type readBufPool struct{ p sync.Pool }

func (p *readBufPool) get() *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, bigReadBuf)
	return &b
}

func (p *readBufPool) put(b *[]byte) { p.p.Put(b) }

// reader frames MQTT packets off a connection. It replaces a bufio.Reader
// of fixed size: the buffer it reads into is the small inline one when the
// connection is quiet and a pooled big one while bytes keep coming, and a
// packet body is read straight into its own allocation (which the decoded
// packet keeps: a PUBLISH's payload aliases it).
type reader struct {
	src  io.Reader
	pool *readBufPool

	small [smallReadBuf]byte
	big   *[]byte // non-nil while streaming
	buf   []byte  // small[:] or *big
	r, w  int     // buf[r:w] is buffered
	// busy: the last read would not have fit the small buffer.
	busy bool
	// ack is what Read returns for a short PUBACK, PUBREC or PUBCOMP (the
	// bulk of what a subscriber sends): valid until the next Read.
	// Allocated on first use, so that connections that never acknowledge
	// (publishers, idle ones) do not carry it.
	ack *packet.Ack
}

func newReader(src io.Reader, pool *readBufPool) *reader {
	rd := &reader{src: src, pool: pool}
	rd.buf = rd.small[:]
	return rd
}

// Buffered is the number of bytes read from the connection and not yet
// consumed: zero means the next packet will need a read (and may block).
func (rd *reader) Buffered() int { return rd.w - rd.r }

// fill reads once more into the empty buffer: the moment to pick which
// buffer the (possibly blocking) read goes into.
func (rd *reader) fill() error {
	rd.r, rd.w = 0, 0
	switch {
	case rd.busy && rd.big == nil:
		rd.big = rd.pool.get()
		rd.buf = *rd.big
	case !rd.busy && rd.big != nil:
		rd.release()
	}
	n, err := rd.src.Read(rd.buf)
	rd.w = n
	// A read that would not have fit the small buffer says the client is
	// streaming. A connection that goes quiet right after such a read keeps
	// the big buffer until its next (small) packet, a keep-alive at worst.
	rd.busy = n >= smallReadBuf
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release gives the big buffer back (the connection went quiet or ended).
func (rd *reader) release() {
	if rd.big != nil {
		rd.pool.put(rd.big)
		rd.big = nil
		rd.buf = rd.small[:]
		rd.r, rd.w = 0, 0
	}
}

func (rd *reader) readByte() (byte, error) {
	for rd.r == rd.w {
		if err := rd.fill(); err != nil {
			return 0, err
		}
	}
	b := rd.buf[rd.r]
	rd.r++
	return b, nil
}

// Read decodes the next packet, as packet.Read does: maxSize bounds the
// whole packet and is checked before the body is allocated. A returned
// *packet.Ack may be the reader's own, overwritten by the next Read.
func (rd *reader) Read(version byte, maxSize int) (packet.Packet, error) {
	first, err := rd.readByte()
	if err != nil {
		return nil, err
	}
	n, size := 0, 0
	for mult := 1; ; mult *= 128 {
		if size == 4 {
			return nil, &packet.Error{Code: packet.MalformedPacket, Text: "variable byte integer longer than 4 bytes"}
		}
		b, err := rd.readByte()
		if err != nil {
			return nil, unexpected(err)
		}
		size++
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
	}
	if maxSize > 0 && 1+size+n > maxSize {
		return nil, &packet.Error{Code: packet.PacketTooLarge,
			Text: fmt.Sprintf("packet of %d bytes exceeds the maximum of %d", 1+size+n, maxSize)}
	}
	if n == 2 && rd.w-rd.r >= 2 {
		switch first {
		case packet.PUBACK << 4, packet.PUBREC << 4, packet.PUBCOMP << 4:
			// A bare acknowledgement (v5: reason 0, no properties), the
			// same as Decode would return, without allocating.
			if id := uint16(rd.buf[rd.r])<<8 | uint16(rd.buf[rd.r+1]); id != 0 {
				rd.r += 2
				if rd.ack == nil {
					rd.ack = new(packet.Ack)
				}
				*rd.ack = packet.Ack{Kind: first >> 4, PacketID: id}
				return rd.ack, nil
			}
		}
	}
	body := make([]byte, n)
	got := copy(body, rd.buf[rd.r:rd.w])
	rd.r += got
	if got < n {
		// The rest goes straight into the body: a big packet never grows
		// the read buffer.
		if _, err := io.ReadFull(rd.src, body[got:]); err != nil {
			return nil, unexpected(err)
		}
		rd.busy = true // a big packet: more is likely to follow
	}
	return packet.Decode(first, body, version)
}

// unexpected turns EOF inside a packet into ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
