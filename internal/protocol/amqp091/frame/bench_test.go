package frame

import (
	"bytes"
	"io"
	"testing"
	"time"
)

func BenchmarkWriteDeliver(b *testing.B) {
	var cw countingWriter
	w := NewWriter(&cw)
	m := &BasicDeliver{ConsumerTag: "amq.ctag-0123456789abcdef", DeliveryTag: 1, Exchange: "amq.direct", RoutingKey: "orders"}
	p := &Properties{ContentType: "application/json", DeliveryMode: 2}
	body := make([]byte, 128)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.DeliveryTag++
		if err := w.WriteMethod(1, m); err != nil {
			b.Fatal(err)
		}
		if err := w.WriteContent(1, ClassBasic, p, body, 131072); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
	b.SetBytes(cw.n / int64(b.N))
}

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// loopReader returns buf over and over.
type loopReader struct {
	buf []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.buf[l.off:])
	l.off = (l.off + n) % len(l.buf)
	return n, nil
}

func BenchmarkReadFrame(b *testing.B) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := range 300 {
		w.WriteMethod(1, &BasicDeliver{ConsumerTag: "ctag", DeliveryTag: uint64(i), RoutingKey: "orders"})
		w.WriteContent(1, ClassBasic, &Properties{DeliveryMode: 2}, make([]byte, 128), 131072)
	}
	w.Flush()
	r := NewReader(&loopReader{buf: buf.Bytes()}, 131072)
	b.SetBytes(int64(buf.Len() / 900))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeContentHeader(b *testing.B) {
	for _, bc := range []struct {
		name string
		p    Properties
	}{
		{"persistent", Properties{DeliveryMode: 2}},
		{"typical", Properties{
			ContentType:  "application/json",
			DeliveryMode: 2,
			MessageID:    "2b1c9e2e-3d4f-4a5b-8c6d-7e8f9a0b1c2d",
			Timestamp:    time.Unix(1700000000, 0),
			Headers:      Table{"x-retries": int32(3), "source": "billing"},
		}},
	} {
		payload := AppendContentHeader(nil, &ContentHeader{ClassID: ClassBasic, BodySize: 128, Properties: bc.p})
		b.Run(bc.name, func(b *testing.B) {
			var h ContentHeader
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeContentHeader(payload, &h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeMethod(b *testing.B) {
	payload := AppendMethod(nil, &BasicPublish{Exchange: "amq.direct", RoutingKey: "orders"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMethod(payload); err != nil {
			b.Fatal(err)
		}
	}
}

var _ io.Writer = (*countingWriter)(nil)
