package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/heraldmq/herald/internal/protocol/wsconn"
)

// A lean WebSocket subscriber speaks just the RFC 6455 a ws-fanout
// subscriber needs: the upgrade, unmasked frames in (messages read in
// place from a small buffer, fragments joined, pings answered) and masked
// frames out, all on the reading goroutine. The coder/websocket library
// hands every read to a per-connection timeout goroutine and back: 15,000
// subscribers cost the machine about what the broker does per broadcast
// (209 ms against its 235; this reader 112, the lean MQTT one 90); on a
// machine that runs the broker too, the subscribers, not the broker, would
// be the measured thing. --library-subscribers uses the library instead,
// and wss:// URLs always do.
type leanWS struct {
	conn    net.Conn
	br      *bufio.Reader
	discard int    // bytes of the last message still in br (read in place)
	msg     []byte // a message that did not fit br, or came in fragments
	out     []byte // the frame being written
	// deadline: a context deadline was put on conn (setup) and must be
	// cleared once a call without one comes.
	deadline bool
}

// leanWSMaxMessage bounds a message, as the library's SetReadLimit does.
const leanWSMaxMessage = 64 << 20

// dialLeanWS opens u (a ws:// URL) over dial and upgrades it, sending
// header (the credentials) with the request.
func dialLeanWS(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), u *url.URL, header http.Header, bufSize int) (*leanWS, error) {
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	conn, err := dial(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(setupConnectTimeout + time.Second))
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", u.RequestURI(), u.Host, key)
	for name, values := range header {
		for _, v := range values {
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	fail := func(err error) (*leanWS, error) {
		conn.Close()
		return nil, err
	}
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(conn, bufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail(fmt.Errorf("no upgrade response: %w", err))
	}
	resp.Body.Close() // a 101 has none; what follows the headers stays in br
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("the server refused the WebSocket upgrade (HTTP %d)", resp.StatusCode))
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsconn.AcceptKey(key) {
		return fail(fmt.Errorf("the server answered the upgrade with a wrong Sec-WebSocket-Accept %q", got))
	}
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		return fail(fmt.Errorf("the server chose extension %q, which was not offered", ext))
	}
	conn.SetDeadline(time.Time{})
	return &leanWS{conn: conn, br: br}, nil
}

// applyDeadline puts ctx's deadline on the socket, or clears one an
// earlier call put there.
func (c *leanWS) applyDeadline(ctx context.Context) {
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(dl)
		c.deadline = true
	} else if c.deadline {
		c.conn.SetDeadline(time.Time{})
		c.deadline = false
	}
}

// Read returns the next text or binary message; it is valid until the next
// Read. Pings are answered and pongs skipped; a close frame ends the
// connection with an error that carries its code and reason.
func (c *leanWS) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	c.applyDeadline(ctx)
	if c.discard > 0 {
		c.br.Discard(c.discard)
		c.discard = 0
	}
	c.msg = c.msg[:0]
	var typ websocket.MessageType
	for {
		fin, op, payload, inPlace, err := c.frame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case 0x8: // close
			code, reason := 1005, ""
			if len(payload) >= 2 {
				code, reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			c.conn.Close()
			return 0, nil, fmt.Errorf("the server closed the WebSocket: status %d, reason %q", code, reason)
		case 0x9: // ping
			pong := append([]byte(nil), payload...)
			if inPlace {
				c.br.Discard(len(payload))
			}
			if err := c.writeFrame(0xA, pong); err != nil {
				return 0, nil, err
			}
			continue
		case 0xA: // pong
			if inPlace {
				c.br.Discard(len(payload))
			}
			continue
		case 0x1, 0x2:
			if typ != 0 {
				return 0, nil, errors.New("a new message began inside a fragmented one")
			}
			typ = websocket.MessageType(op)
			if fin && inPlace {
				c.discard = len(payload)
				return typ, payload, nil
			}
		case 0x0:
			if typ == 0 {
				return 0, nil, errors.New("a continuation frame with no message to continue")
			}
		default:
			return 0, nil, fmt.Errorf("unknown WebSocket opcode %#x", op)
		}
		if inPlace {
			c.msg = append(c.msg, payload...)
			c.br.Discard(len(payload))
		} else {
			c.msg = payload
		}
		if len(c.msg) > leanWSMaxMessage {
			return 0, nil, fmt.Errorf("a message of more than %d bytes", leanWSMaxMessage)
		}
		if fin {
			return typ, c.msg, nil
		}
	}
}

// frame reads one frame header and its payload: in place in br when it
// fits (inPlace; the caller discards it), else appended to c.msg.
func (c *leanWS) frame() (fin bool, op byte, payload []byte, inPlace bool, err error) {
	h, err := c.br.Peek(2)
	if err != nil {
		return false, 0, nil, false, err
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[0]&0x70 != 0 {
		return false, 0, nil, false, errors.New("a frame with reserved bits set (no extension was agreed)")
	}
	if h[1]&0x80 != 0 {
		return false, 0, nil, false, errors.New("a masked frame from the server")
	}
	size, hl := uint64(h[1]&0x7f), 2
	switch size {
	case 126:
		if h, err = c.br.Peek(4); err != nil {
			return false, 0, nil, false, err
		}
		size, hl = uint64(binary.BigEndian.Uint16(h[2:])), 4
	case 127:
		if h, err = c.br.Peek(10); err != nil {
			return false, 0, nil, false, err
		}
		size, hl = binary.BigEndian.Uint64(h[2:]), 10
	}
	if size > leanWSMaxMessage {
		return false, 0, nil, false, fmt.Errorf("a frame of %d bytes", size)
	}
	c.br.Discard(hl)
	n := int(size)
	if n <= c.br.Size() {
		payload, err = c.br.Peek(n)
		return fin, op, payload, true, err
	}
	for n > 0 { // grown as the bytes arrive, not as the header claims
		chunk := min(n, 64<<10)
		c.msg = slices.Grow(c.msg, chunk)
		end := len(c.msg) + chunk
		if _, err := io.ReadFull(c.br, c.msg[len(c.msg):end]); err != nil {
			return false, 0, nil, false, err
		}
		c.msg, n = c.msg[:end], n-chunk
	}
	return fin, op, c.msg, false, nil
}

// Write sends one message as a single masked frame.
func (c *leanWS) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	c.applyDeadline(ctx)
	return c.writeFrame(byte(typ), p)
}

func (c *leanWS) writeFrame(op byte, p []byte) error {
	out := append(c.out[:0], 0x80|op)
	switch n := len(p); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	var mask [4]byte
	rand.Read(mask[:])
	out = append(out, mask[:]...)
	start := len(out)
	out = append(out, p...)
	for i := range p {
		out[start+i] ^= mask[i&3]
	}
	c.out = out
	_, err := c.conn.Write(out)
	return err
}

// CloseNow closes the socket without a closing handshake, as the
// library's CloseNow does.
func (c *leanWS) CloseNow() error { return c.conn.Close() }
