package bench

import (
	"bytes"
	"testing"
)

func TestBodyRoundTrip(t *testing.T) {
	b := NewBody(128)
	if len(b) != 128 {
		t.Fatalf("len %d", len(b))
	}
	want := Header{Producer: 7, Seq: 1<<40 + 3, SentAt: 1_700_000_000_123_456_789, Intended: 1_700_000_000_123_000_000}
	EncodeHeader(b, want)
	got, ok := DecodeHeader(b)
	if !ok || got != want {
		t.Fatalf("DecodeHeader = %+v, %v; want %+v", got, ok, want)
	}
	// Rewriting the header leaves the padding alone.
	pad := append([]byte(nil), b[HeaderSize:]...)
	EncodeHeader(b, Header{Producer: 1, Seq: 2, SentAt: 3, Intended: 4})
	if !bytes.Equal(pad, b[HeaderSize:]) {
		t.Error("EncodeHeader touched the padding")
	}
	if got, _ := DecodeHeader(b); got.Seq != 2 || got.Producer != 1 || got.SentAt != 3 || got.Intended != 4 {
		t.Errorf("second decode %+v", got)
	}
}

func TestNewBodyMinimumSize(t *testing.T) {
	if n := len(NewBody(5)); n != HeaderSize {
		t.Errorf("NewBody(5) has %d bytes, want the header size %d", n, HeaderSize)
	}
	b := NewBody(HeaderSize)
	EncodeHeader(b, Header{Seq: 9})
	if h, ok := DecodeHeader(b); !ok || h.Seq != 9 {
		t.Error("header-only body does not round-trip")
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	b := NewBody(64)
	EncodeHeader(b, Header{Seq: 1})
	if _, ok := DecodeHeader(b[:HeaderSize-1]); ok {
		t.Error("short body accepted")
	}
	b[0] = 'X'
	if _, ok := DecodeHeader(b); ok {
		t.Error("bad magic accepted")
	}
	if _, ok := DecodeHeader([]byte("hello, this is someone else's message body")); ok {
		t.Error("foreign body accepted")
	}
}

func TestEncodeDecodeDoNotAllocate(t *testing.T) {
	b := NewBody(256)
	var seq uint64
	if n := testing.AllocsPerRun(1000, func() {
		seq++
		EncodeHeader(b, Header{Producer: 1, Seq: seq, SentAt: int64(seq), Intended: int64(seq)})
		if h, ok := DecodeHeader(b); !ok || h.Seq != seq {
			t.Fatal("round trip failed")
		}
	}); n != 0 {
		t.Fatalf("encode/decode allocate %v times", n)
	}
}
