package frame

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits bound what a Reader accepts. Every bound is checked before the
// memory it guards is allocated, so a peer cannot make the reader allocate
// more than MaxFrameSize for one frame.
type Limits struct {
	MaxFrameSize  int // command + headers + body, in bytes
	MaxHeaderLine int // one command or header line, without its EOL
	MaxHeaders    int // header lines per frame
	MaxBodySize   int // body bytes
}

// Default limits.
const (
	DefaultMaxBodySize   = 16 << 20
	DefaultMaxFrameSize  = DefaultMaxBodySize + 64<<10
	DefaultMaxHeaderLine = 16 << 10
	DefaultMaxHeaders    = 256
)

// WithDefaults returns l with zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxBodySize <= 0 {
		l.MaxBodySize = DefaultMaxBodySize
	}
	if l.MaxFrameSize <= 0 {
		l.MaxFrameSize = max(DefaultMaxFrameSize, l.MaxBodySize+64<<10)
	}
	if l.MaxHeaderLine <= 0 {
		l.MaxHeaderLine = DefaultMaxHeaderLine
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

// Reader decodes frames from a byte stream. Message boundaries of the
// underlying transport (WebSocket messages) do not matter to it.
type Reader struct {
	br  *bufio.Reader
	lim Limits
	v   Version
	n   int // bytes of the current frame so far
}

// NewReader returns a reader with the given limits (zero = defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	lim = lim.WithDefaults()
	// The buffer holds one whole line, so ReadSlice reports an over-long
	// line as ErrBufferFull instead of growing.
	return &Reader{br: bufio.NewReaderSize(r, max(4096, lim.MaxHeaderLine+2)), lim: lim}
}

// SetVersion sets the negotiated version, which decides header unescaping.
// Before it is set, headers are read raw (as CONNECT's must be).
func (r *Reader) SetVersion(v Version) { r.v = v }

// Read returns the next frame, or (nil, nil) for a heart-beat EOL. At a
// clean end of stream it returns io.EOF; a stream that ends inside a frame
// returns io.ErrUnexpectedEOF.
func (r *Reader) Read() (*Frame, error) {
	r.n = 0
	line, err := r.line()
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, nil // heart-beat
	}
	f := &Frame{Command: string(line)}
	if !knownCommands[f.Command] {
		if !printable(line) {
			return nil, ErrBadCommand
		}
		return nil, fmt.Errorf("%w %q", ErrUnknownCommand, f.Command)
	}
	esc := escapes(r.v, f.Command)
	for {
		line, err = r.line()
		if err != nil {
			return nil, unexpected(err)
		}
		if len(line) == 0 {
			break
		}
		if len(f.Headers) >= r.lim.MaxHeaders {
			return nil, ErrTooManyHeaders
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return nil, fmt.Errorf("%w: no colon", ErrBadHeader)
		}
		k, v := string(line[:i]), string(line[i+1:])
		if esc {
			if k, err = unescape(k, r.v); err != nil {
				return nil, err
			}
			if v, err = unescape(v, r.v); err != nil {
				return nil, err
			}
		}
		f.Headers = append(f.Headers, Header{k, v})
	}
	if cl, ok := f.Get("content-length"); ok {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 {
			return nil, ErrBadLength
		}
		if n > r.lim.MaxBodySize {
			return nil, ErrBodyTooLarge
		}
		if r.n+n+1 > r.lim.MaxFrameSize {
			return nil, ErrFrameTooLarge
		}
		f.Body = make([]byte, n)
		if _, err := io.ReadFull(r.br, f.Body); err != nil {
			return nil, unexpected(err)
		}
		b, err := r.br.ReadByte()
		if err != nil {
			return nil, unexpected(err)
		}
		if b != 0 {
			return nil, ErrMissingNUL
		}
		return f, nil
	}
	for {
		chunk, err := r.br.ReadSlice(0)
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, unexpected(err)
		}
		body := chunk
		if err == nil {
			body = chunk[:len(chunk)-1]
		}
		if len(f.Body)+len(body) > r.lim.MaxBodySize {
			return nil, ErrBodyTooLarge
		}
		r.n += len(chunk)
		if r.n > r.lim.MaxFrameSize {
			return nil, ErrFrameTooLarge
		}
		f.Body = append(f.Body, body...)
		if err == nil {
			return f, nil
		}
	}
}

// line reads one line and returns it without its EOL ("\n" or "\r\n").
// The slice is valid until the next read.
func (r *Reader) line() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > r.lim.MaxHeaderLine+2 {
		return nil, ErrHeaderTooLong
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.n += len(line)
	if r.n > r.lim.MaxFrameSize {
		return nil, ErrFrameTooLarge
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > r.lim.MaxHeaderLine {
		return nil, ErrHeaderTooLong
	}
	return line, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
