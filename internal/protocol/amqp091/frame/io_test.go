package frame

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func TestProtocolHeader(t *testing.T) {
	if err := ReadProtocolHeader(bytes.NewReader([]byte("AMQP\x00\x00\x09\x01rest"))); err != nil {
		t.Fatal(err)
	}
	err := ReadProtocolHeader(strings.NewReader("GET / HTTP/1.1"))
	if !errors.Is(err, ErrBadProtocolHeader) || !strings.Contains(err.Error(), `"GET / HT"`) {
		t.Errorf("bad header: %v", err)
	}
	if err := ReadProtocolHeader(strings.NewReader("AMQP")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short header: %v", err)
	}
	// Reads exactly 8 bytes.
	r := strings.NewReader("AMQP\x00\x00\x09\x01X")
	ReadProtocolHeader(iotest.OneByteReader(r))
	if r.Len() != 1 {
		t.Errorf("read %d bytes too many", 1-r.Len())
	}
}

// Golden frames, written by hand from the spec.
var (
	goldenTuneFrame = "01 0000 0000000c  000a 001e 07ff 00020000 003c  ce"
	goldenHeartbeat = "08 0000 00000000  ce"
	goldenBodyFrame = "03 0005 00000003  616263  ce"
)

func TestWriterGolden(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteRaw(ProtocolHeader[:])
	if err := w.WriteMethod(0, &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60}); err != nil {
		t.Fatal(err)
	}
	w.WriteHeartbeat()
	if err := w.WriteMethod(5, &BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteContent(5, ClassBasic, &Properties{DeliveryMode: 2}, []byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatal("wrote before Flush")
	}
	n := w.Buffered()
	if err := w.Flush(); err != nil || buf.Len() != n {
		t.Fatal("flush", err, buf.Len(), n)
	}
	want := unhex(t, "414d515000000901"+goldenTuneFrame+goldenHeartbeat+
		"01 0005 0000000d  003c 0028 0000 02 6578 02 726b 01  ce"+
		"02 0005 0000000f  003c 0000 0000000000000003 1000 02  ce"+
		goldenBodyFrame)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("got  % x\nwant % x", buf.Bytes(), want)
	}
}

func readAll(t *testing.T, r *Reader) []Frame {
	t.Helper()
	var fs []Frame
	for {
		f, err := r.ReadFrame()
		if err == io.EOF {
			return fs
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Payload = append([]byte(nil), f.Payload...)
		fs = append(fs, f)
	}
}

func TestReadFrames(t *testing.T) {
	in := unhex(t, goldenTuneFrame+goldenHeartbeat+goldenBodyFrame)
	want := []Frame{
		{TypeMethod, 0, unhex(t, "000a 001e 07ff 00020000 003c")},
		{TypeHeartbeat, 0, []byte{}},
		{TypeBody, 5, []byte("abc")},
	}
	for name, r := range map[string]io.Reader{
		"whole":     bytes.NewReader(in),
		"one byte":  iotest.OneByteReader(bytes.NewReader(in)),
		"half read": iotest.HalfReader(bytes.NewReader(in)),
	} {
		if got := readAll(t, NewReader(r, 0)); !equalFrames(got, want) {
			t.Errorf("%s: got %+v", name, got)
		}
	}
	r := NewReader(bytes.NewReader(in), 0)
	if r.Buffered() != 0 {
		t.Error("Buffered before reading")
	}
	r.ReadFrame()
	if r.Buffered() != len(in)-20 {
		t.Errorf("Buffered after one frame = %d, want %d", r.Buffered(), len(in)-20)
	}
	m, err := DecodeMethod(want[0].Payload)
	if err != nil || !reflect.DeepEqual(m, &ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60}) {
		t.Errorf("tune: %+v %v", m, err)
	}
}

func equalFrames(a, b []Frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Channel != b[i].Channel || !bytes.Equal(a[i].Payload, b[i].Payload) {
			return false
		}
	}
	return true
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReadFrameErrors(t *testing.T) {
	// Too large: announced size + 8 > max, detected from the header alone.
	hdr := unhex(t, "03 0001 00000ff9") // 4089 + 8 = 4097 > MinSize
	cr := &countingReader{r: io.MultiReader(bytes.NewReader(hdr), iotest.ErrReader(errors.New("payload must not be read")))}
	_, err := NewReader(cr, 0).ReadFrame()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("too large: %v", err)
	}
	// Exactly the limit is fine.
	ok := append(unhex(t, "03 0001 00000ff8"), make([]byte, 4088)...)
	if _, err := NewReader(bytes.NewReader(append(ok, End)), MinSize).ReadFrame(); err != nil {
		t.Errorf("max-size frame: %v", err)
	}
	// A huge announced size is rejected without allocating for it.
	huge := unhex(t, "03 0001 fffffff0 000000")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := NewReader(bytes.NewReader(huge), math.MaxUint32).ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("huge: %v", err)
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("huge announced frame allocated %d bytes", n)
	}

	for name, tc := range map[string]struct {
		hex  string
		max  uint32
		want error
	}{
		"bad end":       {"01 0000 00000001 00 cf", 0, ErrBadFrameEnd},
		"unknown type":  {"04 0000 00000000 ce", 0, ErrUnknownFrameType},
		"type 0":        {"00 0000 00000000 ce", 0, ErrUnknownFrameType},
		"empty":         {"", 0, io.EOF},
		"short header":  {"01 0000 00", 0, io.ErrUnexpectedEOF},
		"short payload": {"01 0000 00000004 0000", 0, io.ErrUnexpectedEOF},
		"no end":        {"01 0000 00000002 0000", 0, io.ErrUnexpectedEOF},
		"set max":       {"03 0000 00000010 " + strings.Repeat("00", 16) + "ce", 23, ErrFrameTooLarge},
	} {
		_, err := NewReader(bytes.NewReader(unhex(t, tc.hex)), tc.max).ReadFrame()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	r := NewReader(bytes.NewReader(unhex(t, "03 0000 00000010 "+strings.Repeat("00", 16)+"ce")), 23)
	r.SetMaxFrameSize(24)
	if _, err := r.ReadFrame(); err != nil {
		t.Errorf("after SetMaxFrameSize: %v", err)
	}
}

// Frames larger than the bufio buffer take the copying path.
func TestReadLargeFrames(t *testing.T) {
	body := make([]byte, 300<<10)
	for i := range body {
		body[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteContent(3, ClassBasic, nil, body, 200<<10); err != nil {
		t.Fatal(err)
	}
	w.WriteHeartbeat()
	w.Flush()
	raw := buf.Bytes()

	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(raw),
		"one byte": iotest.OneByteReader(bytes.NewReader(raw)),
	} {
		r := NewReader(src, 200<<10)
		fs := readAll(t, r)
		if len(fs) != 4 || fs[0].Type != TypeHeader || fs[3].Type != TypeHeartbeat {
			t.Fatalf("%s: %d frames", name, len(fs))
		}
		if len(fs[1].Payload) != 200<<10-8 {
			t.Errorf("%s: first body frame %d bytes", name, len(fs[1].Payload))
		}
		if got := append(fs[1].Payload, fs[2].Payload...); !bytes.Equal(got, body) {
			t.Errorf("%s: body mismatch", name)
		}
	}

	// Bad end octet on the large path.
	hdrLen := 7 + 14 + 1          // header frame, no properties
	first := hdrLen + 200<<10 - 1 // end octet of the first body frame
	bad := bytes.Clone(raw)
	bad[first] = 0
	r := NewReader(bytes.NewReader(bad), 200<<10)
	r.ReadFrame()
	if _, err := r.ReadFrame(); !errors.Is(err, ErrBadFrameEnd) {
		t.Errorf("large bad end: %v", err)
	}
	// Truncated large frame.
	r = NewReader(bytes.NewReader(raw[:first-10]), 200<<10)
	r.ReadFrame()
	if _, err := r.ReadFrame(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("large truncated: %v", err)
	}
}

func TestWriteContentSplit(t *testing.T) {
	body := []byte(strings.Repeat("0123456789", 10)) // 100 bytes
	for _, tc := range []struct {
		frameMax uint32
		sizes    []int
	}{
		{0, []int{100}},
		{4096, []int{100}},
		{108, []int{100}},
		{107, []int{99, 1}},
		{58, []int{50, 50}},
		{40, []int{32, 32, 32, 4}},
		{30, []int{22, 22, 22, 22, 12}},
		{25, nil}, // 5 frames of 17 bytes and one of 15, checked by count below
	} {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if err := w.WriteContent(7, ClassBasic, &Properties{ContentType: "t"}, body, tc.frameMax); err != nil {
			t.Fatalf("frameMax %d: %v", tc.frameMax, err)
		}
		w.Flush()
		limit := tc.frameMax
		if limit == 0 {
			limit = 1 << 20
		}
		fs := readAll(t, NewReader(&buf, limit))
		var h ContentHeader
		if err := DecodeContentHeader(fs[0].Payload, &h); err != nil || h.BodySize != 100 || h.ClassID != ClassBasic || h.Properties.ContentType != "t" {
			t.Fatalf("frameMax %d: header %+v %v", tc.frameMax, h, err)
		}
		var got []byte
		var sizes []int
		for _, f := range fs[1:] {
			if f.Type != TypeBody || f.Channel != 7 {
				t.Fatalf("frame %+v", f)
			}
			got = append(got, f.Payload...)
			sizes = append(sizes, len(f.Payload))
		}
		if !bytes.Equal(got, body) {
			t.Errorf("frameMax %d: body %q", tc.frameMax, got)
		}
		if tc.sizes != nil && !reflect.DeepEqual(sizes, tc.sizes) {
			t.Errorf("frameMax %d: frame sizes %v, want %v", tc.frameMax, sizes, tc.sizes)
		}
		if tc.frameMax == 25 && len(sizes) != 6 {
			t.Errorf("frameMax 25: %d frames", len(sizes))
		}
	}

	// Empty body: header only.
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteContent(1, ClassBasic, nil, nil, 4096)
	w.Flush()
	if fs := readAll(t, NewReader(&buf, 0)); len(fs) != 1 || fs[0].Type != TypeHeader {
		t.Errorf("empty body: %+v", fs)
	}

	// Errors write nothing.
	w = NewWriter(&buf)
	if err := w.WriteContent(1, ClassBasic, nil, body, 8); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("frameMax 8: %v", err)
	}
	if err := w.WriteContent(1, ClassBasic, &Properties{Type: strings.Repeat("x", 200)}, body, 200); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("header too large: %v", err)
	}
	if err := w.WriteContent(1, ClassBasic, &Properties{Headers: Table{"x": uint(1)}}, body, 0); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("bad header table: %v", err)
	}
	if w.Buffered() != 0 {
		t.Errorf("%d bytes buffered after errors", w.Buffered())
	}
}

func TestSteadyStateAllocs(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(io.Discard)
	deliver := &BasicDeliver{ConsumerTag: "ctag", DeliveryTag: 1, Exchange: "ex", RoutingKey: "rk"}
	props := &Properties{ContentType: "text/plain", DeliveryMode: 2, Headers: Table{"a": int32(1), "b": "x"}}
	body := make([]byte, 128)
	write := func() {
		w.WriteMethod(1, deliver)
		w.WriteContent(1, ClassBasic, props, body, 4096)
	}
	write()
	if a := testing.AllocsPerRun(100, write); a != 0 {
		t.Errorf("writer: %v allocs per deliver", a)
	}

	w = NewWriter(&buf)
	for range 100 {
		w.WriteMethod(1, deliver)
		w.WriteContent(1, ClassBasic, props, body, 4096)
	}
	w.Flush()
	r := NewReader(&buf, 0)
	if a := testing.AllocsPerRun(99, func() {
		if _, err := r.ReadFrame(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("reader: %v allocs per frame", a)
	}
}
