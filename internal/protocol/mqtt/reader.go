package mqtt

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/heraldmq/herald/internal/protocol/kit"
	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// Read buffer sizes. A quiet connection reads into a small buffer, so it
// holds no big buffer at all; a read that fills the small buffer means the
// client is streaming (a PUBACK flood, a publisher), and the reader switches
// to a big buffer until it drains. Both are pooled: a plain TCP connection
// gives its buffer back whenever the socket has nothing more to read (see
// kit.RawReader), so an idle one holds none; over TLS and WebSocket the
// small one stays.
const (
	smallReadBuf = 256
	bigReadBuf   = 8 << 10
)

// readBufPool hands out read buffers; it lives in the Handler so the
// package has no mutable state of its own.
type readBufPool struct{ big, small sync.Pool }

func (p *readBufPool) get() *[]byte {
	if b, ok := p.big.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, bigReadBuf)
	return &b
}

func (p *readBufPool) put(b *[]byte) { p.big.Put(b) }

func (p *readBufPool) getSmall() *[smallReadBuf]byte {
	if b, ok := p.small.Get().(*[smallReadBuf]byte); ok {
		return b
	}
	return new([smallReadBuf]byte)
}

// reader frames MQTT packets off a connection. It replaces a bufio.Reader
// of fixed size: the buffer it reads into is a small one when the
// connection is quiet and a big one while bytes keep coming, and a packet
// body is read straight into its own allocation (which the decoded packet
// keeps: a PUBLISH's payload aliases it).
type reader struct {
	src  io.Reader
	pool *readBufPool

	small *[smallReadBuf]byte // nil while idle on a plain socket
	big   *[]byte             // non-nil while streaming
	buf   []byte              // small[:] or *big
	r, w  int                 // buf[r:w] is buffered
	// busy: the last read would not have fit the small buffer.
	busy bool
	// ack is what Read returns for a short PUBACK, PUBREC or PUBCOMP (the
	// bulk of what a subscriber sends): valid until the next Read.
	// Allocated on first use, so that connections that never acknowledge
	// (publishers, idle ones) do not carry it.
	ack *packet.Ack
}

func newReader(src io.Reader, pool *readBufPool) *reader {
	return &reader{src: src, pool: pool}
}

// Buffered is the number of bytes read from the connection and not yet
// consumed: zero means the next packet will need a read (and may block).
func (rd *reader) Buffered() int { return rd.w - rd.r }

// fill reads once more into the empty buffer: the moment to pick which
// buffer the (possibly blocking) read goes into.
func (rd *reader) fill() error {
	rd.r, rd.w = 0, 0
	n, err := rd.src.Read(rd.Buffer())
	return rd.filled(n, err)
}

// fillFrom is fill reading src (the connection itself, not a
// packetReader: a timeout is the caller's to handle) for a reader that may
// park: a read that brings nothing gives the buffer back, so that a parked
// connection holds none.
func (rd *reader) fillFrom(src io.Reader) error {
	rd.r, rd.w = 0, 0
	n, err := src.Read(rd.Buffer())
	if n <= 0 {
		rd.Release()
	}
	return rd.filled(n, err)
}

// fillRaw is fill on a plain socket, from the read loop's shallow caller:
// the buffer is taken only for a read that finds bytes (kit.RawReader).
func (rd *reader) fillRaw(raw *kit.RawReader) error {
	rd.r, rd.w = 0, 0
	n, err := raw.Read(rd)
	return rd.filled(n, err)
}

// Buffer picks the buffer for the next read (kit.ReadBuffers).
func (rd *reader) Buffer() []byte {
	switch {
	case rd.busy && rd.big == nil:
		rd.big = rd.pool.get()
		rd.buf = *rd.big
	case !rd.busy && rd.big != nil:
		rd.pool.put(rd.big)
		rd.big = nil
		rd.buf = nil
	}
	if rd.buf == nil {
		if rd.small == nil {
			rd.small = rd.pool.getSmall()
		}
		rd.buf = rd.small[:]
	}
	return rd.buf
}

// Release gives the buffers back: the socket had nothing to read
// (kit.ReadBuffers), or the connection ended.
func (rd *reader) Release() {
	if rd.big != nil {
		rd.pool.put(rd.big)
		rd.big = nil
	}
	if rd.small != nil {
		rd.pool.small.Put(rd.small)
		rd.small = nil
	}
	rd.buf = nil
	rd.r, rd.w = 0, 0
}

func (rd *reader) filled(n int, err error) error {
	rd.w = n
	// A read that would not have fit the small buffer says the client is
	// streaming. A connection that goes quiet right after such a read keeps
	// the big buffer until its next read, which on a plain socket gives it
	// back if nothing came (Release).
	rd.busy = n >= smallReadBuf
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
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
