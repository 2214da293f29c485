package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// encodeTable and decodeTable are the table codec on their own, as a
// method argument or property would use it.
func encodeTable(t Table) ([]byte, error) {
	var e encoder
	e.table(t)
	return e.buf, e.err
}

func decodeTable(b []byte) (Table, error) {
	d := decoder{buf: b}
	t := d.table()
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	return t, d.err
}

func allTypesTable() Table {
	ts := time.Unix(1700000000, 0).UTC()
	return Table{
		"bool":    true,
		"false":   false,
		"int8":    int8(-5),
		"uint8":   uint8(250),
		"int16":   int16(-30000),
		"uint16":  uint16(60000),
		"int32":   int32(-2000000000),
		"uint32":  uint32(4000000000),
		"int64":   int64(math.MinInt64),
		"float32": float32(1.5),
		"float64": math.Pi,
		"decimal": Decimal{Scale: 2, Value: -12345},
		"string":  "héllo",
		"empty":   "",
		"bytes":   []byte{0, 1, 2, 0xff},
		"nobytes": []byte{},
		"array":   []any{int32(1), "two", []any{}, Table{"deep": nil}, nil, true},
		"time":    ts,
		"table":   Table{"a": Table{"b": Table{"c": []any{Table{"d": uint8(1)}}}}},
		"void":    nil,
		"":        "empty key",
	}
}

func TestTableRoundTripAllTypes(t *testing.T) {
	in := allTypesTable()
	b, err := encodeTable(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeTable(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", out, in)
	}
	// int is sent as 'l' and comes back as int64.
	b, _ = encodeTable(Table{"n": 42})
	out, _ = decodeTable(b)
	if out["n"] != int64(42) {
		t.Errorf("int decoded as %#v", out["n"])
	}
	// Encoding is deterministic (sorted keys).
	b1, _ := encodeTable(in)
	for range 10 {
		if b2, _ := encodeTable(allTypesTable()); !bytes.Equal(b1, b2) {
			t.Fatal("encoding not deterministic")
		}
	}
	if err := ValidateTable(in); err != nil {
		t.Error(err)
	}
}

func TestTableGolden(t *testing.T) {
	in := Table{"b": true, "a": int32(-1), "s": "xy"}
	want := unhex(t, `00000014
		01 61 49 ffffffff
		01 62 74 01
		01 73 53 00000002 7879`)
	got, err := encodeTable(in)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got % x, %v\nwant % x", got, err, want)
	}
	// Every value type letter, including the spec's 'U' and 'L'.
	dec, err := decodeTable(unhex(t, `0000003f
		01 61 62 fe
		01 62 42 fe
		01 63 73 fffe
		01 64 55 fffe
		01 65 75 fffe
		01 66 4c fffffffffffffffe
		01 67 6c fffffffffffffffe
		01 68 66 3fc00000
		01 69 44 02 00000064
		01 6a 56`))
	if err != nil {
		t.Fatal(err)
	}
	wantT := Table{"a": int8(-2), "b": uint8(0xfe), "c": int16(-2), "d": int16(-2), "e": uint16(0xfffe),
		"f": int64(-2), "g": int64(-2), "h": float32(1.5), "i": Decimal{2, 100}, "j": nil}
	if !reflect.DeepEqual(dec, wantT) {
		t.Errorf("got %#v", dec)
	}
	// Empty table decodes as nil.
	if dec, err := decodeTable(unhex(t, "00000000")); err != nil || dec != nil {
		t.Errorf("empty: %#v %v", dec, err)
	}
}

func TestTableInvalid(t *testing.T) {
	for name, tab := range map[string]Table{
		"uint64":     {"x": uint64(1)},
		"struct":     {"x": struct{}{}},
		"[]string":   {"a": Table{"x": []string{"a"}}},
		"in array":   {"a": []any{1, uint(2)}},
		"long key":   {strings.Repeat("k", 256): 1},
		"map[int]":   {"m": map[int]any{}},
		"deep table": nest(MaxTableDepth + 1),
	} {
		err := ValidateTable(tab)
		if !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%s: ValidateTable = %v, want ErrInvalidValue", name, err)
		}
		// The encoding skips the bad entry and stays well-formed.
		b, _ := encodeTable(tab)
		if _, err := decodeTable(b); err != nil {
			t.Errorf("%s: encoding does not decode: %v", name, err)
		}
	}
	if err := ValidateTable(nest(MaxTableDepth)); err != nil {
		t.Errorf("depth %d: %v", MaxTableDepth, err)
	}
	// A cycle is cut by the depth limit.
	cyc := []any{nil}
	cyc[0] = cyc
	if err := ValidateTable(Table{"c": cyc}); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("cycle: %v", err)
	}
}

// nest returns levels nested tables and arrays, the outermost a table.
func nest(levels int) Table {
	var v any = Table{"leaf": true}
	for l := 2; l <= levels; l++ {
		if l%2 == 0 && l != levels {
			v = []any{v}
		} else {
			v = Table{"t": v}
		}
	}
	return v.(Table)
}

func TestTableDecodeDepthLimit(t *testing.T) {
	// Build nesting by hand: 'F' tables, each containing the next.
	build := func(levels int) []byte {
		inner := []byte{0, 0, 0, 0}
		for range levels - 1 {
			entry := append([]byte{1, 'k', 'F'}, inner...)
			inner = binary.BigEndian.AppendUint32(nil, uint32(len(entry)))
			inner = append(inner, entry...)
		}
		return inner
	}
	if _, err := decodeTable(build(MaxTableDepth)); err != nil {
		t.Errorf("depth %d: %v", MaxTableDepth, err)
	}
	if _, err := decodeTable(build(MaxTableDepth + 1)); !errors.Is(err, ErrSyntax) {
		t.Errorf("depth %d: %v, want ErrSyntax", MaxTableDepth+1, err)
	}
	// Hostile: many levels of arrays claiming the rest of the buffer.
	var b []byte
	for range 100000 {
		b = append(b, 'A', 0xff, 0xff, 0xff, 0xff)
	}
	if _, err := decodeTable(append([]byte{0, 0x07, 0xa1, 0x22, 1, 'k'}, b...)); !errors.Is(err, ErrSyntax) {
		t.Errorf("hostile nesting: %v", err)
	}
}
