package frame

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// writeBufferSize is the size of the Writer's bufio.Writer.
const writeBufferSize = 64 << 10

// maxScratch is the largest encoding buffer a Writer keeps between frames.
const maxScratch = 1 << 20

var heartbeatFrame = [Overhead]byte{TypeHeartbeat, 0, 0, 0, 0, 0, 0, End}

// Writer writes frames to a byte stream through a bufio.Writer. Methods and
// content headers are encoded into a reusable scratch buffer, so writing
// does not allocate in steady state. Nothing is flushed implicitly except
// when the buffer fills up; call Flush.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	bw  *bufio.Writer
	enc encoder
	hdr [HeaderSize]byte
}

// NewWriter returns a Writer writing to w through a new 64 KiB
// bufio.Writer.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, writeBufferSize)}
}

// begin starts encoding a frame payload into the scratch buffer, leaving
// room for the frame header.
func (w *Writer) begin() {
	b := w.enc.buf
	if cap(b) < HeaderSize || cap(b) > maxScratch {
		// First use, or drop a buffer grown by an unusually large frame.
		b = make([]byte, HeaderSize, 512)
	}
	w.enc.reset(b[:HeaderSize])
}

// finish fills in the frame header, appends the end octet and writes the
// frame encoded since begin.
func (w *Writer) finish(typ uint8, channel uint16) error {
	b := w.enc.buf
	b[0] = typ
	binary.BigEndian.PutUint16(b[1:3], channel)
	binary.BigEndian.PutUint32(b[3:7], uint32(len(b)-HeaderSize))
	b = append(b, End)
	w.enc.buf = b
	_, err := w.bw.Write(b)
	return err
}

// WriteMethod writes a method frame. If m holds a value that cannot be
// encoded (see the package documentation) it writes nothing and returns an
// error wrapping ErrInvalidValue.
func (w *Writer) WriteMethod(channel uint16, m Method) error {
	w.begin()
	w.enc.method(m)
	if err := w.enc.err; err != nil {
		return fmt.Errorf("%s: %w", m.Name(), err)
	}
	return w.finish(TypeMethod, channel)
}

// WriteContent writes a content header frame (class id, weight 0, body
// size len(body), property flags and list; p may be nil) followed by body
// frames of at most frameMax-8 payload bytes each (frameMax 0 = no limit;
// an empty body sends no body frame).
//
// It returns an error wrapping ErrInvalidValue if p cannot be encoded, or
// ErrFrameTooLarge if the header frame exceeds frameMax or frameMax leaves
// no room for a body byte; nothing is written then.
func (w *Writer) WriteContent(channel uint16, classID uint16, p *Properties, body []byte, frameMax uint32) error {
	if frameMax != 0 && frameMax <= Overhead && len(body) > 0 {
		return fmt.Errorf("%w: frame max %d leaves no room for body", ErrFrameTooLarge, frameMax)
	}
	w.begin()
	w.enc.inHeader = true
	w.enc.contentHeader(classID, uint64(len(body)), p)
	w.enc.inHeader = false
	if err := w.enc.err; err != nil {
		return fmt.Errorf("content header: %w", err)
	}
	if n := len(w.enc.buf) + 1; frameMax != 0 && uint64(n) > uint64(frameMax) {
		return fmt.Errorf("%w: content header frame of %d bytes (max %d)", ErrFrameTooLarge, n, frameMax)
	}
	if err := w.finish(TypeHeader, channel); err != nil {
		return err
	}
	chunk := len(body)
	if frameMax != 0 && uint64(chunk) > uint64(frameMax)-Overhead {
		chunk = int(frameMax - Overhead)
	}
	for len(body) > 0 {
		n := min(chunk, len(body))
		if err := w.writeFrame(TypeBody, channel, body[:n]); err != nil {
			return err
		}
		body = body[n:]
	}
	return nil
}

// writeFrame writes a frame whose payload is already encoded (not via the
// scratch buffer, to avoid copying bodies twice).
func (w *Writer) writeFrame(typ uint8, channel uint16, payload []byte) error {
	w.hdr[0] = typ
	binary.BigEndian.PutUint16(w.hdr[1:3], channel)
	binary.BigEndian.PutUint32(w.hdr[3:7], uint32(len(payload)))
	if _, err := w.bw.Write(w.hdr[:]); err != nil {
		return err
	}
	if _, err := w.bw.Write(payload); err != nil {
		return err
	}
	return w.bw.WriteByte(End)
}

// WriteHeartbeat writes a heartbeat frame (channel 0, empty payload).
func (w *Writer) WriteHeartbeat() error {
	_, err := w.bw.Write(heartbeatFrame[:])
	return err
}

// WriteRaw writes b as is, e.g. ProtocolHeader.
func (w *Writer) WriteRaw(b []byte) error {
	_, err := w.bw.Write(b)
	return err
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Buffered returns the number of bytes written but not yet flushed.
func (w *Writer) Buffered() int { return w.bw.Buffered() }
