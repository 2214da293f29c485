package wsconn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// NetConn presents the WebSocket as a byte stream for a protocol that
// frames its own packets (MQTT, STOMP): Read returns the payload bytes of
// the data messages in order, message boundaries dropped, with no buffer
// of its own; each Write sends one message of type op.
//
// When strict is set, a data message of the other type closes the
// connection with 1003 (MQTT over WebSocket allows binary messages only,
// [MQTT-6.0.0-1]); otherwise both types are read.
//
// Close runs the close handshake (1000). A peer's close ends Read with
// io.EOF.
func (c *Conn) NetConn(op Opcode, strict bool) net.Conn {
	return &netConn{c: c, op: op, strict: strict}
}

// Of is the WebSocket under a NetConn, nil for any other net.Conn: a
// protocol reading one can watch its TCP socket (UnderlyingConn) and ask
// whether it is Idle.
func Of(nc net.Conn) *Conn {
	if n, ok := nc.(*netConn); ok {
		return n.c
	}
	return nil
}

type netConn struct {
	c      *Conn
	op     Opcode
	strict bool
}

func (n *netConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := n.c
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for c.frameLeft == 0 {
		if c.readErr != nil {
			return 0, streamErr(c.readErr)
		}
		h, err := c.nextFrame(false)
		if err != nil {
			return 0, streamErr(err)
		}
		if n.strict && h.op != OpContinuation && h.op != n.op {
			return 0, c.fail(violation(StatusUnsupportedData, fmt.Sprintf("this endpoint takes opcode %#x messages only", byte(n.op))))
		}
	}
	k := int(min(int64(len(p)), c.frameLeft))
	before := c.frameLeft
	if err := c.readPayload(p[:k], false); err != nil {
		return 0, streamErr(err)
	}
	return int(before - c.frameLeft), nil
}

// streamErr turns the peer's close into the end of the stream.
func streamErr(err error) error {
	var ce *CloseError
	if errors.As(err, &ce) {
		return io.EOF
	}
	return err
}

func (n *netConn) Write(p []byte) (int, error) {
	if err := n.c.WriteMessage(n.op, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (n *netConn) Close() error {
	return n.c.Close(StatusNormalClosure, "")
}

func (n *netConn) LocalAddr() net.Addr                { return n.c.nc.LocalAddr() }
func (n *netConn) RemoteAddr() net.Addr               { return n.c.nc.RemoteAddr() }
func (n *netConn) SetDeadline(t time.Time) error      { return n.c.nc.SetDeadline(t) }
func (n *netConn) SetReadDeadline(t time.Time) error  { return n.c.nc.SetReadDeadline(t) }
func (n *netConn) SetWriteDeadline(t time.Time) error { return n.c.nc.SetWriteDeadline(t) }
