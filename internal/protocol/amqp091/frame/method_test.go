package frame

import (
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// allMethods returns a new zero value of every known method, found by
// probing newMethod (so it does not depend on the spec file).
func allMethods() []Method {
	var ms []Method
	for c := range 256 {
		for m := range 256 {
			if x := newMethod(uint16(c), uint16(m)); x != nil {
				ms = append(ms, x)
			}
		}
	}
	return ms
}

// fill sets every field of the struct pointed to by m to a pseudo-random
// value; with allSet, every value is non-zero and every bit true.
func fill(m any, rnd *rand.Rand, allSet bool) {
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Bool:
			f.SetBool(allSet || rnd.IntN(2) == 1)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			x := rnd.Uint64()
			if allSet && x == 0 {
				x = 1
			}
			f.SetUint(x) // truncated to the field width
			if f.Uint() == 0 && allSet {
				f.SetUint(1)
			}
		case reflect.String:
			n := rnd.IntN(255) + 1
			if !allSet {
				n = rnd.IntN(256)
			}
			b := make([]byte, n)
			for j := range b {
				b[j] = byte('a' + rnd.IntN(26))
			}
			f.SetString(string(b))
		case reflect.Map:
			f.Set(reflect.ValueOf(Table{
				"x-field": v.Type().Field(i).Name,
				"n":       int32(rnd.Int32()),
				"nested":  Table{"b": true, "l": []any{int64(1), "two"}},
			}))
		case reflect.Struct:
			if f.Type() == reflect.TypeFor[time.Time]() {
				f.Set(reflect.ValueOf(time.Unix(rnd.Int64N(1<<40), 0).UTC()))
				continue
			}
			fallthrough
		default:
			panic(fmt.Sprintf("fill: unhandled field %s of %T", v.Type().Field(i).Name, m))
		}
	}
}

func TestRoundTripEveryMethod(t *testing.T) {
	ms := allMethods()
	if len(ms) < 50 {
		t.Fatalf("only %d methods", len(ms))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, zero := range ms {
		typ := reflect.TypeOf(zero).Elem()
		for iter := range 20 {
			m := reflect.New(typ).Interface().(Method)
			if iter > 0 {
				fill(m, rnd, iter == 1)
			}
			b := AppendMethod(nil, m)
			got, err := DecodeMethod(b)
			if err != nil {
				t.Fatalf("%s: decode %x: %v", m.Name(), b, err)
			}
			if reflect.TypeOf(got) != reflect.TypeOf(m) {
				t.Fatalf("%s decoded as %T", m.Name(), got)
			}
			if !reflect.DeepEqual(got, m) {
				t.Fatalf("%s round trip:\n got %+v\nwant %+v", m.Name(), got, m)
			}
			// Every strict prefix is a syntax error, never a panic.
			for n := range len(b) {
				if _, err := DecodeMethod(b[:n]); !errors.Is(err, ErrSyntax) {
					t.Fatalf("%s truncated to %d bytes: err %v, want ErrSyntax", m.Name(), n, err)
				}
			}
			if _, err := DecodeMethod(append(b, 0)); !errors.Is(err, ErrSyntax) {
				t.Fatalf("%s with trailing byte: err %v, want ErrSyntax", m.Name(), err)
			}
		}
	}
}

// specXML is the subset of the spec the tests check against.
type specXML struct {
	Constants []struct {
		Name  string `xml:"name,attr"`
		Value int    `xml:"value,attr"`
	} `xml:"constant"`
	Classes []struct {
		Name    string `xml:"name,attr"`
		Index   uint16 `xml:"index,attr"`
		Methods []struct {
			Name        string `xml:"name,attr"`
			Index       uint16 `xml:"index,attr"`
			Synchronous string `xml:"synchronous,attr"`
			Content     string `xml:"content,attr"`
			Fields      []struct {
				Name string `xml:"name,attr"`
			} `xml:"field"`
		} `xml:"method"`
	} `xml:"class"`
}

func loadSpec(t *testing.T) specXML {
	t.Helper()
	b, err := os.ReadFile("spec/amqp0-9-1.xml")
	if err != nil {
		t.Fatal(err)
	}
	var s specXML
	if err := xml.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMethodsMatchSpec(t *testing.T) {
	s := loadSpec(t)
	n := 0
	for _, c := range s.Classes {
		for _, sm := range c.Methods {
			n++
			name := c.Name + "." + sm.Name
			m := newMethod(c.Index, sm.Index)
			if m == nil {
				t.Errorf("%s (%d,%d): no method", name, c.Index, sm.Index)
				continue
			}
			want := goName(c.Name) + goName(sm.Name)
			if got := reflect.TypeOf(m).Elem().Name(); got != want {
				t.Errorf("%s: type %s, want %s", name, got, want)
			}
			if m.Name() != name || m.ClassID() != c.Index || m.MethodID() != sm.Index ||
				m.HasContent() != (sm.Content == "1") || m.Synchronous() != (sm.Synchronous == "1") {
				t.Errorf("%s: got %s (%d,%d) content=%v sync=%v", name, m.Name(), m.ClassID(), m.MethodID(), m.HasContent(), m.Synchronous())
			}
			if got := reflect.TypeOf(m).Elem().NumField(); got != len(sm.Fields) {
				t.Errorf("%s: %d fields, spec has %d", name, got, len(sm.Fields))
			}
			// Decoding the encoding of a zero method yields the same type.
			d, err := DecodeMethod(AppendMethod(nil, m))
			if err != nil || reflect.TypeOf(d) != reflect.TypeOf(m) {
				t.Errorf("%s: decoded %T, %v", name, d, err)
			}
		}
	}
	if got := len(allMethods()); got != n {
		t.Errorf("newMethod knows %d methods, spec has %d", got, n)
	}
	consts := map[string]int{}
	for _, c := range s.Constants {
		consts[c.Name] = c.Value
	}
	for name, v := range map[string]int{
		"frame-method": TypeMethod, "frame-header": TypeHeader, "frame-body": TypeBody,
		"frame-heartbeat": TypeHeartbeat, "frame-min-size": MinSize, "frame-end": End,
	} {
		if consts[name] != v {
			t.Errorf("%s = %d in spec, %d in Go", name, consts[name], v)
		}
	}
}

func goName(s string) string {
	var b strings.Builder
	for _, p := range strings.Split(s, "-") {
		b.WriteString(strings.ToUpper(p[:1]) + p[1:])
	}
	return b.String()
}

func TestConstants(t *testing.T) {
	for got, want := range map[uint16]uint16{
		ReplySuccess: 200, ContentTooLarge: 311, NoRoute: 312, NoConsumers: 313,
		ConnectionForced: 320, InvalidPath: 402, AccessRefused: 403, NotFound: 404,
		ResourceLocked: 405, PreconditionFailed: 406, FrameError: 501, SyntaxError: 502,
		CommandInvalid: 503, ChannelError: 504, UnexpectedFrame: 505, ResourceError: 506,
		NotAllowed: 530, NotImplemented: 540, InternalError: 541,
		ClassConnection: 10, ClassChannel: 20, ClassExchange: 40, ClassQueue: 50,
		ClassBasic: 60, ClassConfirm: 85, ClassTx: 90,
	} {
		if got != want {
			t.Errorf("constant %d, want %d", got, want)
		}
	}
	if !IsHardError(FrameError) || !IsHardError(ConnectionForced) || IsHardError(NotFound) || IsHardError(ReplySuccess) {
		t.Error("IsHardError")
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Golden encodings, written by hand from the spec.
var goldenMethods = []struct {
	m   Method
	hex string
}{
	{&ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
		"000a 001e  07ff  00020000  003c"},
	{&ConnectionTuneOk{ChannelMax: 1, FrameMax: 4096, Heartbeat: 0},
		"000a 001f  0001  00001000  0000"},
	{&BasicPublish{Exchange: "ex", RoutingKey: "rk", Mandatory: true},
		"003c 0028  0000  02 6578  02 726b  01"},
	{&BasicPublish{RoutingKey: "q", Immediate: true},
		"003c 0028  0000  00  01 71  02"},
	{&ConnectionClose{ReplyCode: NotFound, ReplyText: "NOT_FOUND", FailingClassID: 50, FailingMethodID: 10},
		"000a 0032  0194  09 4e4f545f464f554e44  0032 000a"},
	{&BasicDeliver{ConsumerTag: "c", DeliveryTag: 258, Redelivered: true, Exchange: "", RoutingKey: "k"},
		"003c 003c  01 63  0000000000000102  01  00  01 6b"},
	{&QueueDeclare{Queue: "q", Durable: true, AutoDelete: true, NoWait: true, Arguments: Table{"x-max-length": int32(10)}},
		"0032 000a  0000  01 71  1a  00000012 0c 782d6d61782d6c656e677468 49 0000000a"},
	{&BasicNack{DeliveryTag: 7, Multiple: false, Requeue: true},
		"003c 0078  0000000000000007  02"},
	{&ConnectionOpen{VirtualHost: "/", Reserved1: "", Reserved2: true},
		"000a 0028  01 2f  00  01"},
	{&ConfirmSelect{NoWait: true}, "0055 000a  01"},
	{&TxCommitOk{}, "005a 0015"},
	{&ChannelOpenOk{Reserved1: "ab"}, "0014 000b  00000002 6162"},
}

func TestGoldenMethods(t *testing.T) {
	for _, g := range goldenMethods {
		want := unhex(t, g.hex)
		if got := AppendMethod(nil, g.m); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got % x\nwant % x", g.m.Name(), got, want)
		}
		m, err := DecodeMethod(want)
		if err != nil {
			t.Errorf("%s: %v", g.m.Name(), err)
			continue
		}
		if !reflect.DeepEqual(m, g.m) {
			t.Errorf("%s: decoded %+v", g.m.Name(), m)
		}
	}
}

func TestDecodeMethodErrors(t *testing.T) {
	_, err := DecodeMethod(unhex(t, "0063 0001"))
	if !errors.Is(err, ErrUnknownMethod) || !strings.Contains(err.Error(), "class 99 method 1") {
		t.Errorf("unknown class: %v", err)
	}
	_, err = DecodeMethod(unhex(t, "003c 0063"))
	if !errors.Is(err, ErrUnknownMethod) || !strings.Contains(err.Error(), "class 60 method 99") {
		t.Errorf("unknown method: %v", err)
	}
	for _, h := range []string{
		"", "00", "003c00",
		"003c 0028 0000 05 6578",                 // shortstr longer than payload
		"000a 000b 00000005 01 53 00 00",         // start-ok: table length beyond payload
		"000a 000b 00000003 01 6b 3f 00 00 00",   // unknown field type '?'
		"000a 000b 00000002 01 6b",               // table entry without value
		"000a 0014 ffffffff",                     // secure: longstr length 2^32-1
		"003c 003c 01 63 0000000000000102 01 00", // deliver without routing key
	} {
		if _, err := DecodeMethod(unhex(t, h)); !errors.Is(err, ErrSyntax) {
			t.Errorf("%q: err %v, want ErrSyntax", h, err)
		}
	}
}

func TestEncodeInvalidValues(t *testing.T) {
	long := strings.Repeat("x", 256)
	m := &QueueDeclare{Queue: long, Arguments: Table{"ok": int32(1), "bad": struct{}{}}}
	b := AppendMethod(nil, m)
	got, err := DecodeMethod(b)
	if err != nil {
		t.Fatal(err)
	}
	qd := got.(*QueueDeclare)
	if qd.Queue != long[:255] || !reflect.DeepEqual(qd.Arguments, Table{"ok": int32(1)}) {
		t.Errorf("AppendMethod did not truncate/skip: %+v", qd)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteMethod(1, m); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("WriteMethod: %v, want ErrInvalidValue", err)
	}
	if err := w.WriteMethod(1, &QueueDeclare{Arguments: Table{"bad": uint64(1)}}); !errors.Is(err, ErrInvalidValue) {
		t.Errorf("WriteMethod: %v, want ErrInvalidValue", err)
	}
	if w.Buffered() != 0 {
		t.Errorf("failed writes left %d bytes buffered", w.Buffered())
	}
	// The writer recovers for the next method.
	if err := w.WriteMethod(1, &QueueDeclare{Queue: "q"}); err != nil {
		t.Fatal(err)
	}
}
