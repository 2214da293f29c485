package frame

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// golden are frames as real clients write them, used by the unit tests and
// as fuzz seeds.
var golden = []string{
	"CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:1000,1000\n\n\x00",
	"STOMP\r\naccept-version:1.2\r\nhost:/\r\n\r\n\x00",
	"SEND\ndestination:/queue/a\ncontent-type:text/plain\ncontent-length:5\n\nhello\x00",
	"SEND\ndestination:/topic/a.b\nx-key:a\\cb\\nc\\\\d\\re\n\nno length\x00",
	"SUBSCRIBE\nid:0\ndestination:/queue/a\nack:client-individual\nprefetch-count:10\n\n\x00",
	"ACK\nid:T_0@@1\n\n\x00",
	"NACK\nmessage-id:T_0@@1\nsubscription:0\n\n\x00",
	"BEGIN\ntransaction:tx1\nreceipt:r1\n\n\x00",
	"DISCONNECT\nreceipt:77\n\n\x00",
	"\n",
	"\r\n",
	"SEND\ndestination:/queue/a\ncontent-length:3\n\na\x00b\x00",
}

func TestGoldenFrames(t *testing.T) {
	r := NewReader(strings.NewReader(strings.Join(golden, "")), Limits{})
	r.SetVersion(V12)
	var got []*Frame
	for {
		f, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f)
	}
	if len(got) != len(golden) {
		t.Fatalf("got %d frames, want %d", len(got), len(golden))
	}
	if got[1].Command != STOMP || got[1].Value("host") != "/" {
		t.Errorf("CRLF frame: %v", got[1])
	}
	if string(got[2].Body) != "hello" {
		t.Errorf("body %q", got[2].Body)
	}
	if v := got[3].Value("x-key"); v != "a:b\nc\\d\re" {
		t.Errorf("unescaped %q", v)
	}
	if string(got[3].Body) != "no length" {
		t.Errorf("NUL body %q", got[3].Body)
	}
	if got[9] != nil || got[10] != nil {
		t.Errorf("heart-beats should read as nil frames")
	}
	if !bytes.Equal(got[11].Body, []byte("a\x00b")) {
		t.Errorf("content-length body %q", got[11].Body)
	}
}

func TestConnectNotUnescaped(t *testing.T) {
	r := NewReader(strings.NewReader("CONNECT\npasscode:a\\cb\n\n\x00"), Limits{})
	r.SetVersion(V12)
	f, err := r.Read()
	if err != nil || f.Value("passcode") != `a\cb` {
		t.Fatalf("%v %v", f, err)
	}
}

func TestEscapingPerVersion(t *testing.T) {
	f := &Frame{Command: MESSAGE, Headers: []Header{{"k:1", "a\nb\\c\rd"}}, Body: []byte("x")}
	for _, v := range []Version{V11, V12} {
		enc := Append(nil, f, v)
		r := NewReader(bytes.NewReader(enc), Limits{})
		r.SetVersion(v)
		g, err := r.Read()
		if err != nil {
			t.Fatalf("%v: %v (%q)", v, err, enc)
		}
		if g.Headers[0] != f.Headers[0] || string(g.Body) != "x" {
			t.Errorf("%v: %v", v, g)
		}
	}
	// 1.1 has no \r escape.
	r := NewReader(strings.NewReader("SEND\nk:a\\rb\n\n\x00"), Limits{})
	r.SetVersion(V11)
	if _, err := r.Read(); !errors.Is(err, ErrBadEscape) {
		t.Errorf("1.1 \\r: %v", err)
	}
	// 1.0 keeps everything raw.
	r = NewReader(strings.NewReader("SEND\nk:a\\qb\n\n\x00"), Limits{})
	r.SetVersion(V10)
	if f, err := r.Read(); err != nil || f.Value("k") != `a\qb` {
		t.Errorf("1.0: %v %v", f, err)
	}
}

func TestErrors(t *testing.T) {
	lim := Limits{MaxFrameSize: 200, MaxHeaderLine: 40, MaxHeaders: 3, MaxBodySize: 100}
	cases := []struct {
		in   string
		want error
	}{
		{"FOO\n\n\x00", ErrUnknownCommand},
		{"\x01\x02\n\n\x00", ErrBadCommand},
		{"SEND\nnocolon\n\n\x00", ErrBadHeader},
		{"SEND\nk:\\x\n\n\x00", ErrBadEscape},
		{"SEND\nk:\\\n\n\x00", ErrBadEscape},
		{"SEND\ncontent-length:-1\n\n\x00", ErrBadLength},
		{"SEND\ncontent-length:abc\n\n\x00", ErrBadLength},
		{"SEND\ncontent-length:101\n\n", ErrBodyTooLarge},
		{"SEND\ncontent-length:99999999999999\n\n", ErrBadLength},
		{"SEND\ncontent-length:2\n\nabc\x00", ErrMissingNUL},
		{"SEND\n" + strings.Repeat("k", 50) + ":v\n\n\x00", ErrHeaderTooLong},
		{"SEND\na:1\nb:2\nc:3\nd:4\n\n\x00", ErrTooManyHeaders},
		{"SEND\n\n" + strings.Repeat("x", 150) + "\x00", ErrBodyTooLarge},
		{"SEND\ncontent-length:3\n\nab", io.ErrUnexpectedEOF},
		{"SEND\nk:v", io.ErrUnexpectedEOF},
		{"SEND\n\nbody without nul", io.ErrUnexpectedEOF},
		{"", io.EOF},
	}
	for _, c := range cases {
		r := NewReader(strings.NewReader(c.in), lim)
		r.SetVersion(V12)
		_, err := r.Read()
		if c.want == ErrBadLength && err != nil && errors.Is(err, ErrBodyTooLarge) {
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%q: got %v, want %v", c.in, err, c.want)
		}
	}
	// The frame bound covers headers plus body.
	lim = Limits{MaxFrameSize: 60, MaxBodySize: 100}
	r := NewReader(strings.NewReader("SEND\ncontent-length:50\n\n"+strings.Repeat("x", 50)+"\x00"), lim)
	if _, err := r.Read(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("frame bound: %v", err)
	}
}

func TestAppendAddsContentLength(t *testing.T) {
	out := Append(nil, &Frame{Command: ERROR, Headers: []Header{{"message", "bad\nthing"}}}, V12)
	want := "ERROR\nmessage:bad\\nthing\ncontent-length:0\n\n\x00"
	if string(out) != want {
		t.Errorf("got %q", out)
	}
	out = Append(nil, &Frame{Command: CONNECTED, Headers: []Header{{"version", "1.2"}, {"server", "a\nb"}}}, V12)
	if string(out) != "CONNECTED\nversion:1.2\nserver:ab\n\n\x00" {
		t.Errorf("got %q", out)
	}
}

// FuzzReader feeds arbitrary bytes, whole and split in two halves (the
// second arriving as a separate read), and checks that the reader never
// panics, never exceeds its limits, and that every frame it accepts
// re-encodes to something it reads back identically.
func FuzzReader(f *testing.F) {
	for _, g := range golden {
		f.Add([]byte(g), uint16(len(g)/2))
	}
	f.Add([]byte(strings.Join(golden, "")), uint16(40))
	lim := Limits{MaxFrameSize: 4096, MaxHeaderLine: 256, MaxHeaders: 16, MaxBodySize: 2048}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		cut := int(split) % (len(data) + 1)
		whole := readAll(t, bytes.NewReader(data), lim)
		halves := readAll(t, io.MultiReader(bytes.NewReader(data[:cut]), bytes.NewReader(data[cut:])), lim)
		if len(whole) != len(halves) {
			t.Fatalf("whole gave %d frames, halves %d", len(whole), len(halves))
		}
		for i, fr := range whole {
			if fr == nil {
				continue
			}
			if len(fr.Body) > lim.MaxBodySize || len(fr.Headers) > lim.MaxHeaders {
				t.Fatalf("limit exceeded: %v", fr)
			}
			if !equalFrames(fr, halves[i]) {
				t.Fatalf("split changed frame %d: %v vs %v", i, fr, halves[i])
			}
			enc := Append(nil, fr, V12)
			r := NewReader(bytes.NewReader(enc), Limits{})
			r.SetVersion(V12)
			back, err := r.Read()
			if err != nil {
				t.Fatalf("re-read %q: %v", enc, err)
			}
			if back.Command != fr.Command || !bytes.Equal(back.Body, fr.Body) {
				t.Fatalf("round trip: %v vs %v", fr, back)
			}
		}
	})
}

func readAll(t *testing.T, in io.Reader, lim Limits) []*Frame {
	r := NewReader(in, lim)
	r.SetVersion(V12)
	var out []*Frame
	for {
		f, err := r.Read()
		if err != nil {
			return out
		}
		out = append(out, f)
	}
}

func equalFrames(a, b *Frame) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Command != b.Command || !bytes.Equal(a.Body, b.Body) || len(a.Headers) != len(b.Headers) {
		return false
	}
	for i := range a.Headers {
		if a.Headers[i] != b.Headers[i] {
			return false
		}
	}
	return true
}
