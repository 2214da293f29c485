package wsconn

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseHeaderGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want header
		n    int
		code StatusCode // violation expected
	}{
		// RFC 6455 5.7: a single-frame masked text message "Hello".
		{"masked text", []byte{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}, header{fin: true, op: OpText, masked: true, length: 5, mask: [4]byte{0x37, 0xfa, 0x21, 0x3d}}, 6, 0},
		{"unmasked ping", []byte{0x89, 0x05}, header{fin: true, op: OpPing, length: 5}, 2, 0},
		{"16-bit length", []byte{0x82, 0x7E, 0x01, 0x00}, header{fin: true, op: OpBinary, length: 256}, 4, 0},
		{"64-bit length", []byte{0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}, header{fin: true, op: OpBinary, length: 65536}, 10, 0},
		{"first fragment", []byte{0x01, 0x03}, header{op: OpText, length: 3}, 2, 0},
		{"short", []byte{0x81}, header{}, 0, 0},
		{"short mask", []byte{0x81, 0x85, 1, 2}, header{}, 0, 0},
		{"short 64", []byte{0x82, 0x7F, 0, 0}, header{}, 0, 0},
		{"msb length", []byte{0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}, header{}, 0, StatusProtocolError},
		{"reserved opcode", []byte{0x83, 0x00}, header{}, 0, StatusProtocolError},
		{"reserved control opcode", []byte{0x8B, 0x00}, header{}, 0, StatusProtocolError},
		{"rsv1", []byte{0xC1, 0x00}, header{}, 0, StatusProtocolError},
		{"fragmented ping", []byte{0x09, 0x00}, header{}, 0, StatusProtocolError},
		{"long ping", []byte{0x89, 0x7E, 0x00, 0x7E}, header{}, 0, StatusProtocolError},
	} {
		h, n, err := parseHeader(tc.b)
		if tc.code != 0 {
			var v *ViolationError
			if !errors.As(err, &v) || v.Code != tc.code {
				t.Errorf("%s: err %v, want a %d violation", tc.name, err, tc.code)
			}
			continue
		}
		if err != nil || n != tc.n || h != tc.want {
			t.Errorf("%s: %+v %d %v, want %+v %d", tc.name, h, n, err, tc.want, tc.n)
		}
	}
}

func TestAppendHeaderRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		for _, op := range []Opcode{OpText, OpBinary} {
			b := appendHeader(nil, true, op, n)
			h, hn, err := parseHeader(b)
			if err != nil || hn != len(b) || h.length != int64(n) || h.op != op || !h.fin || h.masked {
				t.Errorf("length %d: %+v %d %v", n, h, hn, err)
			}
		}
	}
}

func TestMaskBytes(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 1, 7, 16, 17, 100} {
		for start := range 4 {
			p := bytes.Repeat([]byte{0xAA}, n)
			want := bytes.Clone(p)
			for i := range want {
				want[i] ^= key[(start+i)&3]
			}
			// In two pieces, as a payload read in two reads.
			cut := n / 3
			pos := maskBytes(key, start, p[:cut])
			pos = maskBytes(key, pos, p[cut:])
			if !bytes.Equal(p, want) || pos != (start+n)&3 {
				t.Errorf("n %d start %d: %x, want %x", n, start, p, want)
			}
		}
	}
}

func TestParseClose(t *testing.T) {
	if c, r, err := parseClose(nil); c != StatusNoStatusRcvd || r != "" || err != nil {
		t.Errorf("empty: %d %q %v", c, r, err)
	}
	if c, r, err := parseClose(closePayload(StatusGoingAway, "bye")); c != StatusGoingAway || r != "bye" || err != nil {
		t.Errorf("1001: %d %q %v", c, r, err)
	}
	for _, bad := range [][]byte{{0x03}, {0x03, 0xED}, {0x03, 0xE8, 0xff}, {0x13, 0x88}} { // 1-byte, 1005, bad UTF-8, 5000
		if _, _, err := parseClose(bad); err == nil {
			t.Errorf("%x: accepted", bad)
		}
	}
	if p := closePayload(StatusNormalClosure, string(bytes.Repeat([]byte("é"), 100))); len(p) > maxControlPayload {
		t.Errorf("close payload %d bytes", len(p))
	}
}
