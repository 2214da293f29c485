package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// echoServer accepts with o and echoes every message (ReadMessage), or
// the byte stream (NetConn) when stream is set. Its handler's end is
// reported on done with the read error.
func echoServer(t *testing.T, o *Options, stream bool) (url string, done chan error) {
	t.Helper()
	done = make(chan error, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, o)
		if err != nil {
			done <- err
			return
		}
		if stream {
			nc := c.NetConn(OpBinary, true)
			_, err := io.Copy(nc, nc)
			_ = nc.Close()
			done <- err
			return
		}
		for {
			op, msg, err := c.ReadMessage()
			if err != nil {
				done <- err
				return
			}
			if err := c.WriteMessage(op, msg); err != nil {
				done <- err
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), done
}

func dial(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(1 << 24)
	return c
}

func TestEchoMessages(t *testing.T) {
	url, done := echoServer(t, &Options{ReadLimit: 1 << 20, Pool: &Pool{}}, false)
	c := dial(t, url, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		typ websocket.MessageType
		b   []byte
	}{
		{websocket.MessageText, []byte("hello")},
		{websocket.MessageBinary, nil},
		{websocket.MessageText, bytes.Repeat([]byte("x"), 126)},
		{websocket.MessageBinary, bytes.Repeat([]byte{1, 2, 3}, 70000)},
		{websocket.MessageText, []byte(strings.Repeat("é", 3000))},
	} {
		if err := c.Write(ctx, tc.typ, tc.b); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != tc.typ || !bytes.Equal(got, tc.b) {
			t.Fatalf("echo of %d bytes: %v %d bytes %v", len(tc.b), typ, len(got), err)
		}
	}
	// Fragmented: the client's Writer sends one frame per Write.
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"frag", "men", "ted"} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != "fragmented" {
		t.Fatalf("fragmented: %q %v", got, err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; CloseStatus(err) != StatusNormalClosure {
		t.Fatalf("server read ended with %v, want the client's close 1000", err)
	}
}

func TestReadLimitCloses1009(t *testing.T) {
	url, done := echoServer(t, &Options{ReadLimit: 1000}, false)
	c := dial(t, url, nil)
	ctx := context.Background()
	_ = c.Write(ctx, websocket.MessageBinary, make([]byte, 1001))
	_, _, err := c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("client read %v, want close 1009", err)
	}
	var v *ViolationError
	if err := <-done; !errors.As(err, &v) || v.Code != StatusMessageTooBig {
		t.Fatalf("server: %v", err)
	}
}

func TestServerPingAndClose(t *testing.T) {
	got := make(chan error, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Accept(w, r, nil)
		if err != nil {
			got <- err
			return
		}
		readErr := make(chan error, 1)
		go func() {
			_, _, err := c.ReadMessage()
			readErr <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got <- c.Ping(ctx)
		_ = c.Close(StatusGoingAway, "server shutting down")
		<-readErr
	}))
	defer srv.Close()
	c := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	// The client answers pings while it reads.
	_, _, err := c.Read(context.Background())
	if err := <-got; err != nil {
		t.Fatalf("ping: %v", err)
	}
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("client read %v, want close 1001", err)
	}
}

func TestSubprotocolAndOrigin(t *testing.T) {
	url, done := echoServer(t, &Options{Subprotocols: []string{"v12.stomp", "mqtt"}, OriginPatterns: []string{"app.example.com"}}, false)
	c := dial(t, url, &websocket.DialOptions{Subprotocols: []string{"mqtt", "v12.stomp"}})
	if c.Subprotocol() != "v12.stomp" {
		t.Errorf("subprotocol %q, want ours first: v12.stomp", c.Subprotocol())
	}
	c.CloseNow()
	<-done
	c = dial(t, url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}})
	c.CloseNow()
	<-done
	_, resp, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example.com"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v, want 403", resp, err)
	}
	<-done
}

func TestBadUpgrades(t *testing.T) {
	url, _ := echoServer(t, nil, false)
	hurl := "http" + strings.TrimPrefix(url, "ws")
	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"plain GET", nil, http.StatusUpgradeRequired},
		{"version 8", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}, http.StatusBadRequest},
		{"short key", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "c2hvcnQ="}, http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(http.MethodGet, hurl, nil)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}

// rawDial performs the handshake by hand so that a test can send frames a
// conforming client never would.
func rawDial(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	host := strings.TrimPrefix(url, "ws://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", host)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" { // RFC 6455 1.3
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	return nc, br
}

// readClose reads the server's frames up to its close frame's code.
func readClose(t *testing.T, nc net.Conn, br *bufio.Reader) StatusCode {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		b := make([]byte, 2)
		if _, err := io.ReadFull(br, b); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		n := int(b[1] & 0x7F)
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatal(err)
		}
		if Opcode(b[0]&0xF) == OpClose {
			code, _, _ := parseClose(p)
			_, _ = nc.Write(clientFrame(true, OpClose, nil)) // complete the handshake
			return code
		}
	}
}

func TestViolationsCloseWithTheirCode(t *testing.T) {
	url, done := echoServer(t, nil, false)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  StatusCode
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, StatusProtocolError},
		{"reserved opcode", clientFrame(true, Opcode(3), nil), StatusProtocolError},
		{"continuation first", clientFrame(true, OpContinuation, []byte("x")), StatusProtocolError},
		{"bad UTF-8", clientFrame(true, OpText, []byte{0xff, 0xfe}), StatusInvalidFramePayload},
		{"bad close code", clientFrame(true, OpClose, []byte{0x03, 0xED}), StatusProtocolError},
	} {
		nc, br := rawDial(t, url)
		if _, err := nc.Write(tc.frame); err != nil {
			t.Fatal(err)
		}
		if got := readClose(t, nc, br); got != tc.want {
			t.Errorf("%s: close %d, want %d", tc.name, got, tc.want)
		}
		<-done
	}
}

func TestPingAnsweredAndBytesAfterHandshake(t *testing.T) {
	url, done := echoServer(t, nil, false)
	nc, br := rawDial(t, url)
	// A ping, a text message split over two writes and a close.
	var in []byte
	in = append(in, clientFrame(true, OpPing, []byte("abc"))...)
	in = append(in, clientFrame(true, OpText, []byte("split message"))...)
	_, _ = nc.Write(in[:7])
	_, _ = nc.Write(in[7:])
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 5)
	if _, err := io.ReadFull(br, b); err != nil || b[0] != 0x8A || string(b[2:]) != "abc" {
		t.Fatalf("pong %x %v", b, err)
	}
	b = make([]byte, 2+13)
	if _, err := io.ReadFull(br, b); err != nil || b[0] != 0x81 || string(b[2:]) != "split message" {
		t.Fatalf("echo %q %v", b, err)
	}
	_, _ = nc.Write(clientFrame(true, OpClose, closePayload(StatusGoingAway, "")))
	if got := readClose(t, nc, br); got != StatusGoingAway {
		t.Fatalf("close echo %d", got)
	}
	if err := <-done; CloseStatus(err) != StatusGoingAway {
		t.Fatalf("server: %v", err)
	}
}

func TestNetConnStream(t *testing.T) {
	url, done := echoServer(t, nil, true)
	c := dial(t, url, nil)
	ctx := context.Background()
	payload := bytes.Repeat([]byte("0123456789"), 1000)
	if err := c.Write(ctx, websocket.MessageBinary, payload); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for len(got) < len(payload) {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("stream echo differs")
	}
	// A text message on a binary-only stream: 1003.
	_ = c.Write(ctx, websocket.MessageText, []byte("text"))
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusUnsupportedData {
		t.Fatalf("client read %v, want close 1003", err)
	}
	<-done
}

func TestIdleHoldsNoBuffer(t *testing.T) {
	in := append(clientFrame(true, OpText, bytes.Repeat([]byte("a"), 5000)), clientFrame(true, OpText, []byte("b"))...)
	c, _ := newScriptConn(in, 100, 0)
	if _, m, err := c.ReadMessage(); err != nil || len(m) != 5000 {
		t.Fatal(len(m), err)
	}
	if _, m, err := c.ReadMessage(); err != nil || string(m) != "b" {
		t.Fatal(string(m), err)
	}
	if !c.Idle() {
		t.Fatal("a drained connection still holds a buffer")
	}
}

func TestBatchOneWrite(t *testing.T) {
	sc := &scriptConn{}
	c := newConn(sc, &Options{}, "", nil)
	b := c.pool.GetBatch()
	big := bytes.Repeat([]byte("z"), 2000)
	b.Add(OpText, []byte(`{"a":`), []byte(`1}`))
	b.Add(OpText, []byte(`{"b":`), big)
	b.Add(OpBinary, nil, []byte{1})
	if err := c.WriteBatch(b); err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, m := range []struct {
		op Opcode
		p  []byte
	}{{OpText, []byte(`{"a":1}`)}, {OpText, append([]byte(`{"b":`), big...)}, {OpBinary, []byte{1}}} {
		want = appendHeader(want, true, m.op, len(m.p))
		want = append(want, m.p...)
	}
	if !bytes.Equal(sc.out.Bytes(), want) {
		t.Fatalf("wire %q", sc.out.Bytes())
	}
	if b.Len() != 0 {
		t.Fatal("batch not emptied")
	}
}

func TestWaitReadableAndReadBuffered(t *testing.T) {
	var in []byte
	in = append(in, clientFrame(true, OpText, []byte("one"))...)
	in = append(in, clientFrame(true, OpPing, nil)...)
	in = append(in, clientFrame(false, OpBinary, bytes.Repeat([]byte("x"), 3000))...)
	in = append(in, clientFrame(true, OpContinuation, []byte("end"))...)
	// The first read brings "one" and the ping; the fragmented message
	// comes in a second read, which ReadBuffered does not wait for.
	c, sc := newScriptConn(in, 9+6, 0)
	if err := c.WaitReadable(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		op, m, err := c.ReadBuffered()
		if err != nil {
			t.Fatal(err)
		}
		if op == 0 {
			break
		}
		got = append(got, string(m))
	}
	if len(got) != 1 || got[0] != "one" || !c.Idle() {
		t.Fatalf("first burst %q, idle %v", got, c.Idle())
	}
	if sc.out.Len() != 2 { // the pong
		t.Fatalf("wrote %x, want a pong", sc.out.Bytes())
	}
	if err := c.WaitReadable(); err != nil {
		t.Fatal(err)
	}
	// A message begun in the buffer is read to its end.
	op, m, err := c.ReadBuffered()
	if err != nil || op != OpBinary || len(m) != 3003 {
		t.Fatalf("second burst: %d %d %v", op, len(m), err)
	}
	if op, _, _ := c.ReadBuffered(); op != 0 || !c.Idle() {
		t.Fatalf("not idle after the burst")
	}
	if err := c.WaitReadable(); err == nil {
		t.Fatal("no error at the end of the input")
	}
}
