package frame

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
)

// chunkReader returns its parts in order, at most max bytes per Read and
// never crossing from one part into the next.
type chunkReader struct {
	parts [][]byte
	max   int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.parts) > 0 && len(c.parts[0]) == 0 {
		c.parts = c.parts[1:]
	}
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.max)], c.parts[0])
	c.parts[0] = c.parts[0][n:]
	return n, nil
}

type readResult struct {
	frames []Frame
	err    error
}

func readFrames(r *Reader) readResult {
	var res readResult
	for {
		f, err := r.ReadFrame()
		if err != nil {
			res.err = err
			return res
		}
		f.Payload = append([]byte{}, f.Payload...)
		res.frames = append(res.frames, f)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(unhex(f, goldenTuneFrame+goldenHeartbeat+goldenBodyFrame), uint32(0))
	f.Add(unhex(f, goldenHeartbeat+"08 0000 00000000 cd"), uint32(0))
	f.Add(unhex(f, "03 0001 00000010 00"), uint32(16))
	f.Add(unhex(f, "09 0001 00000000 ce"), uint32(100))
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.WriteMethod(1, &BasicDeliver{ConsumerTag: "c", DeliveryTag: 9, RoutingKey: "k"})
	w.WriteContent(1, ClassBasic, &Properties{ContentType: "t", Headers: Table{"a": 1}}, make([]byte, 40), 20)
	w.Flush()
	f.Add(buf.Bytes(), uint32(20))
	f.Add(buf.Bytes(), uint32(0))

	f.Fuzz(func(t *testing.T, data []byte, limit uint32) {
		whole := readFrames(NewReader(bytes.NewReader(data), limit))
		half := len(data) / 2
		split := readFrames(NewReader(&chunkReader{
			parts: [][]byte{bytes.Clone(data[:half]), bytes.Clone(data[half:])},
			max:   1 + len(data)%7,
		}, limit))
		if !equalFrames(whole.frames, split.frames) {
			t.Fatalf("short reads changed the frames:\n%+v\n%+v", whole.frames, split.frames)
		}
		if fmt.Sprint(whole.err) != fmt.Sprint(split.err) {
			t.Fatalf("short reads changed the error: %v vs %v", whole.err, split.err)
		}
		if !errors.Is(whole.err, io.EOF) && !errors.Is(whole.err, io.ErrUnexpectedEOF) &&
			!errors.Is(whole.err, ErrFrameTooLarge) && !errors.Is(whole.err, ErrBadFrameEnd) &&
			!errors.Is(whole.err, ErrUnknownFrameType) {
			t.Fatalf("unexpected error %v", whole.err)
		}
		// The frames read re-encode to exactly the bytes consumed.
		if limit == 0 {
			limit = MinSize
		}
		var out bytes.Buffer
		w := NewWriter(&out)
		for _, fr := range whole.frames {
			if uint64(len(fr.Payload))+Overhead > uint64(limit) {
				t.Fatalf("frame of %d bytes exceeds limit %d", len(fr.Payload)+Overhead, limit)
			}
			if err := w.writeFrame(fr.Type, fr.Channel, fr.Payload); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("re-encoded frames differ from input")
		}
		if whole.err == io.EOF && out.Len() != len(data) {
			t.Fatalf("io.EOF with %d unread bytes", len(data)-out.Len())
		}
	})
}

// sameValue compares decoded values; NaN floats make reflect.DeepEqual
// fail, so it falls back to comparing the Go syntax representations.
func sameValue(a, b any) bool {
	return reflect.DeepEqual(a, b) || fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

func FuzzDecodeMethod(f *testing.F) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, m := range allMethods() {
		f.Add(AppendMethod(nil, m))
		fill(m, rnd, true)
		f.Add(AppendMethod(nil, m))
	}
	for _, g := range goldenMethods {
		f.Add(unhex(f, g.hex))
	}
	var discard Writer
	discard.bw = NewWriter(io.Discard).bw

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMethod(data)
		if err != nil {
			if m != nil || (!errors.Is(err, ErrSyntax) && !errors.Is(err, ErrUnknownMethod)) {
				t.Fatalf("bad error %v (method %v)", err, m)
			}
			return
		}
		enc := AppendMethod(nil, m)
		m2, err := DecodeMethod(enc)
		if err != nil {
			t.Fatalf("re-encoded %s does not decode: %v\n% x", m.Name(), err, enc)
		}
		if !sameValue(m, m2) {
			t.Fatalf("%s round trip:\n%#v\n%#v", m.Name(), m, m2)
		}
		if enc2 := AppendMethod(nil, m2); !bytes.Equal(enc, enc2) {
			t.Fatalf("%s: encoding not stable", m.Name())
		}
		// Whatever decodes can be written.
		if err := discard.WriteMethod(1, m); err != nil {
			t.Fatalf("%s: WriteMethod: %v", m.Name(), err)
		}
		// With a memo, after another method and after itself, the result is the same.
		var memo Memo
		for _, prev := range [][]byte{AppendMethod(nil, &BasicPublish{Exchange: "e", RoutingKey: "k"}), data} {
			if _, err := DecodeMethodMemo(prev, &memo); err != nil {
				t.Fatalf("memo: %v", err)
			}
			mm, err := DecodeMethodMemo(data, &memo)
			if err != nil || !sameValue(m, mm) {
				t.Fatalf("memo changed %s: %v\n%#v\n%#v", m.Name(), err, m, mm)
			}
		}
	})
}

func FuzzDecodeContentHeader(f *testing.F) {
	f.Add(AppendContentHeader(nil, &ContentHeader{ClassID: ClassBasic, BodySize: 5}))
	f.Add(AppendContentHeader(nil, &ContentHeader{ClassID: ClassBasic, BodySize: 1 << 40, Properties: fullProperties()}))
	f.Add(AppendContentHeader(nil, &ContentHeader{Properties: Properties{DeliveryMode: 1, Headers: Table{"x": []any{1.5}}}}))
	f.Add(unhex(f, "003c 0007 0000000000000001 8001 0000 01 61"))
	f.Add(unhex(f, "003c 0000 0000000000000000 0001 8000 01 61"))

	f.Fuzz(func(t *testing.T, data []byte) {
		var h ContentHeader
		if err := DecodeContentHeader(data, &h); err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		enc := AppendContentHeader(nil, &h)
		var h2 ContentHeader
		if err := DecodeContentHeader(enc, &h2); err != nil {
			t.Fatalf("re-encoded header does not decode: %v\n% x", err, enc)
		}
		if !sameValue(h, h2) {
			t.Fatalf("round trip:\n%#v\n%#v", h, h2)
		}
		if enc2 := AppendContentHeader(nil, &h2); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding not stable")
		}
		if err := ValidateTable(h.Properties.Headers); err != nil {
			t.Fatalf("decoded headers do not validate: %v", err)
		}
		// With a memo, after a header and after itself, the result is the same.
		var memo Memo
		for _, prev := range [][]byte{enc, data} {
			var hm ContentHeader
			if err := DecodeContentHeaderMemo(prev, &hm, &memo); err != nil {
				t.Fatalf("memo: %v", err)
			}
			if err := DecodeContentHeaderMemo(data, &hm, &memo); err != nil {
				t.Fatalf("memo: %v", err)
			}
			if !sameValue(h, hm) {
				t.Fatalf("memo changed the header:\n%#v\n%#v", h, hm)
			}
		}
	})
}

func FuzzTable(f *testing.F) {
	for _, tab := range []Table{allTypesTable(), nest(MaxTableDepth), {"n": 1, "f": float32(2)}, nil} {
		b, err := encodeTable(tab)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(unhex(f, "0000000a 01 6b 41 00000004 41 000000"))
	f.Add(unhex(f, "00000008 01 6b 46 00000000 ff"))

	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := decodeTable(data)
		if err != nil {
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		enc, err := encodeTable(tab)
		if err != nil {
			t.Fatalf("decoded table does not encode: %v", err)
		}
		tab2, err := decodeTable(enc)
		if err != nil {
			t.Fatalf("re-encoded table does not decode: %v\n% x", err, enc)
		}
		if !sameValue(tab, tab2) {
			t.Fatalf("round trip:\n%#v\n%#v", tab, tab2)
		}
		if enc2, _ := encodeTable(tab2); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding not stable")
		}
	})
}
