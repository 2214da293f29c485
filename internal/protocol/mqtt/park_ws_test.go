//go:build linux

package mqtt

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldmq/herald/internal/protocol/mqtt/packet"
)

// wsClient is a minimal WebSocket client over a TCP connection, as a
// net.Conn: each Write is one masked binary frame, Read returns the
// payload bytes of the server's frames. The test writes to tcp directly to
// split a frame.
type wsClient struct {
	net.Conn
	tcp  net.Conn
	br   *bufio.Reader
	left int // payload bytes left in the server frame being read
}

func dialWS(t *testing.T, url string) *wsClient {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	req := "GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &wsClient{Conn: nc, tcp: nc, br: br}
}

// wsFrame is p as one masked binary frame (a zero mask key: the payload
// goes as it is).
func wsFrame(p []byte) []byte {
	b := []byte{0x82}
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	b = append(b, 0, 0, 0, 0)
	return append(b, p...)
}

func (w *wsClient) Write(p []byte) (int, error) {
	if _, err := w.tcp.Write(wsFrame(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *wsClient) Read(p []byte) (int, error) {
	for w.left == 0 {
		var h [2]byte
		if _, err := io.ReadFull(w.br, h[:]); err != nil {
			return 0, err
		}
		n := int(h[1] & 0x7f)
		switch n {
		case 126:
			var l [2]byte
			if _, err := io.ReadFull(w.br, l[:]); err != nil {
				return 0, err
			}
			n = int(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			if _, err := io.ReadFull(w.br, l[:]); err != nil {
				return 0, err
			}
			n = int(binary.BigEndian.Uint64(l[:]))
		}
		if h[0]&0x0f >= 8 { // a control frame: not part of the stream
			if _, err := w.br.Discard(n); err != nil {
				return 0, err
			}
			if h[0]&0x0f == 8 {
				return 0, io.EOF
			}
			continue
		}
		w.left = n
	}
	n, err := w.br.Read(p[:min(len(p), w.left)])
	w.left -= n
	return n, err
}

// wsRaw connects an MQTT client over the WebSocket at url.
func (e *testEnv) wsRaw(url, id string) (*rawClient, *wsClient) {
	e.t.Helper()
	ws := dialWS(e.t, url)
	c := &rawClient{t: e.t, nc: ws, r: bufio.NewReader(ws), version: packet.V311}
	c.send(&packet.Connect{ProtocolName: "MQTT", ProtocolLevel: packet.V311, CleanStart: true, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "guest", PasswordFlag: true, Password: []byte("guest")})
	if ack, ok := c.read().(*packet.Connack); !ok || ack.ReasonCode != 0 {
		e.t.Fatalf("connack %#v", ack)
	}
	return c, ws
}

// An idle MQTT-over-WebSocket connection parks (its TCP socket in the
// poller, no goroutine) and is served again by its next frame: a
// subscribe, deliveries to it, pings, and frames split across the park
// deadline (a header cut short, a payload cut short) all work.
func TestWebSocketConnectionParks(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	srv := httptest.NewServer(http.HandlerFunc(e.h.ServeWebSocket))
	t.Cleanup(srv.Close)
	c, ws := e.wsRaw(srv.URL, "ws-parked")
	e.waitParked(1)
	c.send(&packet.Subscribe{PacketID: 1, Subscriptions: []packet.Subscription{{Filter: "wspark/#", QoS: 1}}})
	if p := c.read(); p.Type() != packet.SUBACK {
		t.Fatalf("got %#v, want SUBACK", p)
	}
	e.deliverParked(c, "wspark/x")

	// A frame header cut short at the park deadline.
	e.waitParked(2)
	ping := wsFrame((&packet.Pingreq{}).Encode(nil, packet.V311))
	ws.tcp.Write(ping[:1])
	time.Sleep(3 * parkAfter)
	ws.tcp.Write(ping[1:])
	if p := c.read(); p.Type() != packet.PINGRESP {
		t.Fatalf("got %#v, want PINGRESP", p)
	}
	// A payload cut short: the frame says 1000-odd bytes, 10 come first.
	e.waitParked(2)
	big := wsFrame((&packet.Publish{Topic: "elsewhere", Payload: make([]byte, 1000)}).Encode(nil, packet.V311))
	ws.tcp.Write(big[:20])
	time.Sleep(3 * parkAfter)
	ws.tcp.Write(big[20:])
	c.pingPong()
	e.waitParked(2)
}

// A parked MQTT-over-WebSocket connection ends with the Handler: Close
// wakes it and the client sees the connection close.
func TestWebSocketParkedConnectionClose(t *testing.T) {
	e := startEnv(t, Config{ParkAfter: parkAfter})
	srv := httptest.NewServer(http.HandlerFunc(e.h.ServeWebSocket))
	t.Cleanup(srv.Close)
	c, _ := e.wsRaw(srv.URL, "ws-closed")
	e.waitParked(1)
	done := make(chan struct{})
	go func() { e.h.Close(); close(done) }()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if p, err := packet.Read(c.r, packet.V311, 0); err == nil {
		t.Fatalf("got %#v, want the connection closed", p)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if n := e.h.ConnectionCount(); n != 0 {
		t.Fatalf("%d connections after Close", n)
	}
}
