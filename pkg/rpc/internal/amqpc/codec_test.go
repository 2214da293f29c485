package amqpc

import (
	"bufio"
	"bytes"
	"net"
	"reflect"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestPropertiesRoundTrip(t *testing.T) {
	p := Properties{
		ContentType: "application/json", ContentEncoding: "gzip",
		Headers: amqp.Table{
			"x-deadline": int64(1700000000123), "x-rpc-status": "OK", "b": true, "f": 1.5,
			"i8": int8(-3), "u8": uint8(3), "i16": int16(-300), "u16": uint16(300), "i32": int32(-70000),
			"u32": uint32(70000), "f32": float32(2.5), "bytes": []byte("raw"), "nil": nil,
			"t": time.Unix(1700000000, 0), "dec": amqp.Decimal{Scale: 2, Value: 12345},
			"nested": amqp.Table{"a": []any{"x", int64(1), amqp.Table{}}},
		},
		DeliveryMode: 2, Priority: 5, CorrelationId: "c.1", ReplyTo: "amq.rabbitmq.reply-to.abc",
		Expiration: "1000", MessageId: "m", Timestamp: time.Unix(1700000001, 0), Type: "svc.Method",
		UserId: "guest", AppId: "app",
	}
	e := enc{}
	e.properties(&p)
	if e.err != nil {
		t.Fatal(e.err)
	}
	d := dec{b: e.b}
	got := d.properties(nil)
	got.keepRawHeaders(nil)
	if d.err != nil || len(d.b) != 0 {
		t.Fatalf("decode: %v, %d bytes left", d.err, len(d.b))
	}
	if !reflect.DeepEqual(got.HeaderTable(), p.Headers) {
		t.Fatalf("headers:\n got %#v\nwant %#v", got.HeaderTable(), p.Headers)
	}
	if v, ok := got.Header("x-deadline"); !ok || v != int64(1700000000123) {
		t.Fatalf("Header(x-deadline) = %v, %v", v, ok)
	}
	if n, ok := got.HeaderLong("x-deadline"); !ok || n != 1700000000123 {
		t.Fatalf("HeaderLong(x-deadline) = %v, %v", n, ok)
	}
	for _, k := range []string{"x-rpc-status", "i32", "absent"} {
		if _, ok := got.HeaderLong(k); ok {
			t.Errorf("HeaderLong(%q) found a long long", k)
		}
	}
	if _, ok := got.Header("absent"); ok {
		t.Fatal("Header found an absent key")
	}
	for _, c := range []struct {
		key, text string
		want      bool
	}{{"x-rpc-status", "OK", true}, {"x-rpc-status", "O", false}, {"bytes", "raw", false}, {"x-deadline", "OK", false}, {"absent", "", false}} {
		if got.HeaderIsText(c.key, c.text) != c.want || p.HeaderIsText(c.key, c.text) != c.want {
			t.Errorf("HeaderIsText(%q, %q) is not %v (received or sent)", c.key, c.text, c.want)
		}
	}
	got.rawHeaders, got.Headers = nil, p.Headers
	if !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, p)
	}
}

func TestEncodeRefuses(t *testing.T) {
	e := enc{}
	e.shortstr(string(make([]byte, 256)))
	if e.err == nil {
		t.Fatal("a 256-byte short string encoded")
	}
	e = enc{}
	e.table(amqp.Table{"ch": make(chan int)})
	if e.err == nil {
		t.Fatal("a channel encoded as a table value")
	}
}

// TestContentSplitsAtFrameMax: a body larger than a frame is sent in
// several body frames that the reader reassembles.
func TestContentSplitsAtFrameMax(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 1000)
	var p Properties
	p.CorrelationId = "x"
	out, err := appendContent(nil, 3, &p, body, minFrameMax)
	if err != nil {
		t.Fatal(err)
	}
	c := &Conn{r: bufio.NewReader(bytes.NewReader(out)), frameMax: minFrameMax}
	var buf, got []byte
	frames := 0
	for {
		typ, ch, payload, err := c.readFrame(&buf)
		if err != nil {
			break
		}
		frames++
		if ch != 3 {
			t.Fatalf("channel %d", ch)
		}
		if typ == frameBody {
			got = append(got, payload...)
		}
	}
	if !bytes.Equal(got, body) || frames != 1+(len(body)+minFrameMax-frameOverhead-1)/(minFrameMax-frameOverhead) {
		t.Fatalf("%d frames, body %d bytes", frames, len(got))
	}
}

// FuzzDecode: whatever the broker sends, decoding a frame, a content
// header or a table fails cleanly or succeeds, never panics or loops.
func FuzzDecode(f *testing.F) {
	e := enc{}
	var p Properties
	p.Headers = amqp.Table{"x-rpc-status": "OK", "n": amqp.Table{"a": []any{int64(1)}}}
	p.CorrelationId = "id"
	e.properties(&p)
	f.Add(e.b)
	f.Add([]byte{0x20, 0, 0, 0, 0, 4, 'F', 0, 0, 0})
	f.Add([]byte{1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 60, 0xCE})
	f.Add([]byte{})
	// basic.deliver (consumer "", tag 1), a header with a 3-byte body, the body.
	del := []byte{1, 0, 1, 0, 0, 0, 17, 0, 60, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 'q', 0xCE}
	del = append(del, 2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0xCE)
	del = append(del, 3, 0, 1, 0, 0, 0, 3, 'a', 'b', 'c', 0xCE)
	f.Add(del)
	f.Fuzz(func(t *testing.T, b []byte) {
		d := dec{b: b}
		p := d.properties(nil)
		_, _ = p.Header("x-rpc-status")
		_ = p.HeaderTable()
		d = dec{b: b}
		_ = d.table(0)
		// The same bytes as a stream of frames for one channel with a
		// consumer: deliveries, returns and content reassembly.
		c := &Conn{nc: discardConn{}, r: bufio.NewReader(bytes.NewReader(b)), frameMax: minFrameMax,
			channels: map[uint16]*Channel{}}
		ch := newChannel(c, 1)
		c.channels[1] = ch
		cons := &consumer{deliver: func(*Delivery) {}}
		cons.state.Store(1)
		ch.consumers[""] = cons
		ch.onReturn = func(*Return) {}
		var buf []byte
		for range 16 {
			typ, _, payload, err := c.readFrame(&buf)
			if err != nil || ch.frame(typ, payload) != nil {
				break
			}
		}
	})
}

// discardConn is a net.Conn that swallows writes (a channel's replies to
// the broker, e.g. close-ok).
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error) { return len(b), nil }
func (discardConn) Close() error                { return nil }

// TestDeliveryReuse: a released delivery becomes the next one, its
// allocation reused, and the next one's body and headers are its own; a
// header given as *int64 goes out as the long long it points to.
func TestDeliveryReuse(t *testing.T) {
	c := &Conn{nc: discardConn{}, frameMax: minFrameMax, channels: map[uint16]*Channel{}}
	ch := newChannel(c, 1)
	var got []*Delivery
	cons := &consumer{deliver: func(d *Delivery) { got = append(got, d) }}
	cons.state.Store(1)
	ch.consumers["c"] = cons
	deliver := func(body string, deadline int64) *Delivery {
		t.Helper()
		b, at := beginFrame(nil, frameMethod, 1)
		e := enc{b: b}
		e.short(classBasic)
		e.short(mBasicDeliver)
		e.shortstr("c")
		e.longlong(uint64(len(got) + 1))
		e.octet(0)
		e.shortstr("")
		e.shortstr("q")
		b = endFrame(e.b, at)
		var p Properties
		p.HeaderList = []Field{{Key: "x-deadline", Value: &deadline}}
		b, err := appendContent(b, 1, &p, []byte(body), minFrameMax)
		if err != nil {
			t.Fatal(err)
		}
		c.r = bufio.NewReader(bytes.NewReader(b))
		var buf []byte
		for range 3 {
			typ, _, payload, err := c.readFrame(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := ch.frame(typ, payload); err != nil {
				t.Fatal(err)
			}
		}
		d := got[len(got)-1]
		if v, ok := d.Header("x-deadline"); string(d.Body) != body || !ok || v != deadline {
			t.Fatalf("delivery: body %q, x-deadline %v (%T)", d.Body, v, v)
		}
		return d
	}
	d := deliver("first body", 1700000000123)
	// sync.Pool may drop what is put in it (the race detector makes it
	// do so at random): a few releases, one of them is reused.
	reused := false
	for i := 0; i < 50 && !reused; i++ {
		prev, alloc := d, &d.buf[:1][0]
		d.Release()
		d = deliver("second", 1700000000456)
		reused = d == prev && &d.buf[:1][0] == alloc
	}
	if !reused {
		t.Fatal("a released delivery and its buffer were never reused")
	}
	if d.Exchange != "" || d.RoutingKey != "q" || d.Redelivered {
		t.Errorf("reused delivery: exchange %q, key %q", d.Exchange, d.RoutingKey)
	}
	long := deliver("a body longer than the first one's buffer, so not reusable", 1)
	if long == d {
		t.Error("a delivery not released was reused")
	}
}
