package frame

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readBufferSize is the size of the Reader's bufio.Reader. Frames that fit
// in it are returned without copying.
const readBufferSize = 64 << 10

// Reader reads frames from a byte stream.
type Reader struct {
	br       *bufio.Reader
	maxFrame uint32
	buf      []byte // payload buffer for frames larger than the bufio buffer
}

// NewReader returns a Reader that reads frames from r through a new
// bufio.Reader. maxFrameSize limits the whole frame, header and end octet
// included, like AMQP frame-max; 0 means MinSize.
func NewReader(r io.Reader, maxFrameSize uint32) *Reader {
	fr := &Reader{br: bufio.NewReaderSize(r, readBufferSize)}
	fr.SetMaxFrameSize(maxFrameSize)
	return fr
}

// SetMaxFrameSize changes the frame size limit (see NewReader), e.g. after
// connection.tune-ok. 0 means MinSize.
func (r *Reader) SetMaxFrameSize(n uint32) {
	if n == 0 {
		n = MinSize
	}
	r.maxFrame = n
}

// Buffered returns the number of bytes that can be read without blocking.
// When it is less than a frame header, the next ReadFrame may block.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// ReadFrame reads the next frame. The returned Payload is valid only until
// the next call to ReadFrame; it is backed by the Reader's buffers, which
// are reused (no allocation per frame in steady state).
//
// Errors: io.EOF if the stream ends cleanly before a frame,
// io.ErrUnexpectedEOF if it ends within one; ErrUnknownFrameType,
// ErrFrameTooLarge (detected from the header, before the payload is read
// or any memory is allocated for it) and ErrBadFrameEnd, wrapped with
// detail. After an error the stream position is unspecified and the
// connection should be closed.
func (r *Reader) ReadFrame() (Frame, error) {
	hdr, err := r.br.Peek(HeaderSize)
	if err != nil {
		if len(hdr) > 0 && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{
		Type:    hdr[0],
		Channel: binary.BigEndian.Uint16(hdr[1:3]),
	}
	size := binary.BigEndian.Uint32(hdr[3:7])
	switch f.Type {
	case TypeMethod, TypeHeader, TypeBody, TypeHeartbeat:
	default:
		return Frame{}, fmt.Errorf("%w: type %d on channel %d", ErrUnknownFrameType, f.Type, f.Channel)
	}
	if total := uint64(size) + Overhead; total > uint64(r.maxFrame) {
		return Frame{}, fmt.Errorf("%w: %d bytes on channel %d (max %d)", ErrFrameTooLarge, total, f.Channel, r.maxFrame)
	}
	total := int(size) + Overhead
	var end byte
	if total <= r.br.Size() {
		// Fast path: the whole frame fits in the bufio buffer.
		b, err := r.br.Peek(total)
		if err != nil {
			return Frame{}, unexpected(err)
		}
		f.Payload = b[HeaderSize : total-1 : total-1]
		end = b[total-1]
		r.br.Discard(total) // cannot fail: the bytes are buffered
	} else {
		r.br.Discard(HeaderSize)
		if err := r.readPayload(int(size)); err != nil {
			return Frame{}, unexpected(err)
		}
		f.Payload = r.buf
		if end, err = r.br.ReadByte(); err != nil {
			return Frame{}, unexpected(err)
		}
	}
	if end != End {
		return Frame{}, fmt.Errorf("%w: %#02x after %d-byte payload of type %d frame on channel %d",
			ErrBadFrameEnd, end, size, f.Type, f.Channel)
	}
	return f, nil
}

// readPayload reads n bytes into r.buf, growing it only as data arrives so
// a peer announcing a large frame cannot make us allocate memory it never
// fills.
func (r *Reader) readPayload(n int) error {
	if cap(r.buf) >= n {
		r.buf = r.buf[:n]
		_, err := io.ReadFull(r.br, r.buf)
		return err
	}
	r.buf = r.buf[:0]
	for len(r.buf) < n {
		if len(r.buf) == cap(r.buf) {
			grow := max(cap(r.buf), readBufferSize)
			r.buf = append(r.buf, make([]byte, min(grow, n-len(r.buf)))...)[:len(r.buf)]
		}
		chunk := r.buf[len(r.buf):min(cap(r.buf), n)]
		k, err := io.ReadFull(r.br, chunk)
		r.buf = r.buf[:len(r.buf)+k]
		if err != nil {
			return err
		}
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
