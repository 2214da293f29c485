package bench

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// leanPeer serves one WebSocket with the coder/websocket library and runs
// script on it; the test's lean client dials it.
func leanPeer(t *testing.T, script func(ctx context.Context, c *websocket.Conn, r *http.Request)) *leanWS {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		defer c.CloseNow()
		script(r.Context(), c, r)
	}))
	t.Cleanup(func() {
		<-done
		srv.Close()
	})
	u, _ := url.Parse(strings.Replace(srv.URL, "http://", "ws://", 1) + "/ws?batch=1")
	h := http.Header{}
	h.Set("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialLeanWS(ctx, (&net.Dialer{}).DialContext, u, h, 4<<10)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func TestLeanWSReadsWhatTheLibraryWrites(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 10<<10) // larger than the 4 KiB buffer
	echoed := make(chan string, 1)
	c := leanPeer(t, func(ctx context.Context, s *websocket.Conn, r *http.Request) {
		if r.URL.Query().Get("batch") != "1" || r.Header.Get("Authorization") == "" {
			t.Errorf("request %s lost its query or credentials", r.URL)
		}
		_ = s.Write(ctx, websocket.MessageText, []byte("small"))
		_ = s.Write(ctx, websocket.MessageBinary, big)
		w, _ := s.Writer(ctx, websocket.MessageText) // fragments: one frame per Write
		_, _ = w.Write([]byte("frag-"))
		_, _ = w.Write([]byte("mented"))
		_ = w.Close()
		// Ping waits for the pong, which the library reads only while
		// a Read runs; the client's masked message arrives meanwhile.
		go func() {
			for first := true; ; first = false {
				_, b, err := s.Read(ctx)
				if err != nil {
					return
				}
				if first {
					echoed <- string(b)
				}
			}
		}()
		if err := s.Ping(ctx); err != nil {
			t.Errorf("the lean client did not answer the ping: %v", err)
		}
		_ = s.Write(ctx, websocket.MessageText, []byte("after ping"))
		_ = s.Close(websocket.StatusPolicyViolation, "too slow")
	})
	ctx := context.Background()
	for _, want := range []struct {
		typ  websocket.MessageType
		body []byte
	}{{websocket.MessageText, []byte("small")}, {websocket.MessageBinary, big}, {websocket.MessageText, []byte("frag-mented")}} {
		typ, b, err := c.Read(ctx)
		if err != nil || typ != want.typ || !bytes.Equal(b, want.body) {
			t.Fatalf("read %v %d bytes %v, want %v %d bytes", typ, len(b), err, want.typ, len(want.body))
		}
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hello server")); err != nil {
		t.Fatal(err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != "after ping" {
		t.Fatalf("after the ping: %q %v", b, err)
	}
	if got := <-echoed; got != "hello server" {
		t.Errorf("the server read %q", got)
	}
	_, _, err := c.Read(ctx)
	if err == nil || !strings.Contains(err.Error(), "1008") || !strings.Contains(err.Error(), "too slow") {
		t.Errorf("close frame: %v, want status 1008 and its reason", err)
	}
}

func TestLeanWSRefusedUpgrade(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer srv.Close()
	u, _ := url.Parse(strings.Replace(srv.URL, "http://", "ws://", 1) + "/ws")
	_, err := dialLeanWS(context.Background(), (&net.Dialer{}).DialContext, u, nil, 4<<10)
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("dial: %v, want the refusal with HTTP 401", err)
	}
}

// discardConn takes the lean client's writes (pongs) and closes.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
func (discardConn) Close() error                { return nil }

func FuzzLeanWSRead(f *testing.F) {
	f.Add([]byte("\x81\x05hello"))
	f.Add([]byte("\x01\x03abc\x89\x00\x80\x02de"))
	f.Add([]byte("\x82\x7e\x00\x04abcd\x88\x04\x03\xe8ok"))
	f.Add([]byte("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x02hi"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &leanWS{conn: discardConn{}, br: bufio.NewReaderSize(bytes.NewReader(data), 16)}
		for range 64 {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if len(b) > len(data) {
				t.Fatalf("a %d-byte message from %d bytes of input", len(b), len(data))
			}
		}
	})
}
