package store

import (
	"bytes"
	"errors"
	"testing"
)

// A Reader returns what ReadMessage returns, across segments and windows,
// for messages in log order and out of it.
func TestReaderMatchesReadMessage(t *testing.T) {
	fs := NewMemFS()
	l, _ := openT(t, fs, Options{SegmentSize: 64 << 10})
	const n = 3000
	big := bytes.Repeat([]byte("B"), readerWindow+10) // larger than a window
	for id := uint64(1); id <= n; id++ {
		recs := publish(id, id, 1)
		if id == 1500 {
			recs[0].Body = big
		}
		mustAppend(t, l, recs...)
	}
	mustAppend(t, l, ack(1, 7))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, _ = openT(t, fs, Options{SegmentSize: 64 << 10})
	defer l.Close()

	r := l.NewReader()
	order := make([]uint64, 0, n+20)
	for id := uint64(1); id <= n; id++ {
		order = append(order, id)
	}
	order = append(order, 2999, 3, 1500, 2, 1, 3000) // backwards jumps
	for _, id := range order {
		wantMeta, wantBody, wantErr := l.ReadMessage(id)
		meta, body, err := r.ReadMessage(id)
		if !errors.Is(err, wantErr) || !bytes.Equal(meta, wantMeta) || !bytes.Equal(body, wantBody) {
			t.Fatalf("message %d: Reader gave (%q, %d bytes, %v), ReadMessage (%q, %d bytes, %v)", id, meta, len(body), err, wantMeta, len(wantBody), wantErr)
		}
		meta, size, err := r.ReadMeta(id)
		if !errors.Is(err, wantErr) || !bytes.Equal(meta, wantMeta) || size != len(wantBody) {
			t.Fatalf("message %d: ReadMeta gave (%q, %d, %v), want (%q, %d, %v)", id, meta, size, err, wantMeta, len(wantBody), wantErr)
		}
	}
	if _, _, err := r.ReadMessage(7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("acked message 7: err %v, want ErrNotFound", err)
	}
}
