package frame

import (
	"bytes"
	"testing"
)

func benchFrame() *Frame {
	return &Frame{Command: MESSAGE, Headers: []Header{
		{"subscription", "0"}, {"destination", "/queue/bench"}, {"message-id", "T_0@@12345"},
		{"ack", "T_0@@12345"}, {"content-type", "application/json"}, {"x-trace", "a:b\nc"},
	}, Body: bytes.Repeat([]byte("x"), 256)}
}

func BenchmarkAppend(b *testing.B) {
	f := benchFrame()
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], f, V12)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkRead(b *testing.B) {
	one := Append(nil, benchFrame(), V12)
	stream := bytes.Repeat(one, 1000)
	b.SetBytes(int64(len(one)))
	b.ReportAllocs()
	rd := bytes.NewReader(stream)
	r := NewReader(rd, Limits{})
	r.SetVersion(V12)
	for b.Loop() {
		if _, err := r.Read(); err != nil {
			rd.Reset(stream)
			r = NewReader(rd, Limits{})
			r.SetVersion(V12)
		}
	}
}
