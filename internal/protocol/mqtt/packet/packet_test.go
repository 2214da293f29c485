package packet

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// golden is a table of wire frames: what each decodes to, or the reason
// code its decoding fails with. They also seed the fuzz target.
var golden = []struct {
	name    string
	version byte
	wire    []byte
	want    Packet     // nil when err is set
	err     ReasonCode // 0 = decodes
}{
	{"connect v311 clean", V311, []byte{0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', '1'},
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanStart: true, KeepAlive: 60, ClientID: "c1"}, 0},
	{"connect v5 user+pass+will", V5, []byte{0x10, 0x25, 0, 4, 'M', 'Q', 'T', 'T', 5, 0xc4 | 0x08, 0, 10,
		5, 0x11, 0, 0, 0, 30, // session expiry 30
		0, 1, 'c',
		5, 0x18, 0, 0, 0, 5, // will delay 5
		0, 1, 'w', 0, 1, 'x',
		0, 1, 'u', 0, 1, 'p'},
		&Connect{ProtocolName: "MQTT", ProtocolLevel: 5, KeepAlive: 10, Properties: Properties{SessionExpiry: Ptr[uint32](30)},
			ClientID: "c", Will: &Will{QoS: 1, Properties: Properties{WillDelay: 5}, Topic: "w", Payload: []byte("x")},
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p")}, 0},
	{"connect v31 MQIsdp", V311, []byte{0x10, 0x0f, 0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 0x02, 0, 0, 0, 1, 'a'},
		&Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanStart: true, ClientID: "a"}, 0},
	// [MQTT-3.1.2-1] wrong protocol name.
	{"connect bad name", V311, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 60, 0, 0}, nil, UnsupportedProtocolVersion},
	// [MQTT-3.1.2-3] reserved flag.
	{"connect reserved flag", V311, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 60, 0, 0}, nil, MalformedPacket},
	// [MQTT-3.1.2-22] password without user name (3.1.1).
	{"connect pass no user", V311, []byte{0x10, 0x0f, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 60, 0, 0, 0, 1, 'p'}, nil, MalformedPacket},
	{"connack v311", V311, []byte{0x20, 0x02, 0x01, 0x00}, &Connack{SessionPresent: true}, 0},
	{"connack v5 assigned id", V5, []byte{0x20, 0x07, 0x00, 0x00, 0x04, 0x12, 0, 1, 'z'},
		&Connack{Properties: Properties{AssignedClientID: "z"}}, 0},
	{"publish qos0", V311, []byte{0x30, 0x06, 0, 3, 'a', '/', 'b', 'x'}, &Publish{Topic: "a/b", Payload: []byte("x")}, 0},
	{"publish qos1 retain dup", V311, []byte{0x3b, 0x06, 0, 1, 't', 0, 7, 'y'},
		&Publish{Dup: true, QoS: 1, Retain: true, Topic: "t", PacketID: 7, Payload: []byte("y")}, 0},
	{"publish v5 alias user prop", V5, []byte{0x32, 0x0f, 0, 0, 0, 1, 0x0a, 0x23, 0, 3, 0x26, 0, 1, 'k', 0, 1, 'v'},
		&Publish{QoS: 1, PacketID: 1, Properties: Properties{TopicAlias: 3, User: []UserProperty{{"k", "v"}}}, Payload: []byte{}}, 0},
	// [MQTT-3.3.1-4] QoS 3.
	{"publish qos3", V311, []byte{0x36, 0x05, 0, 1, 't', 0, 1}, nil, MalformedPacket},
	// [MQTT-3.3.2-2] wildcard in topic name.
	{"publish wildcard", V311, []byte{0x30, 0x03, 0, 1, '#'}, nil, TopicNameInvalid},
	// [MQTT-2.2.1-3] packet id 0.
	{"publish id 0", V311, []byte{0x32, 0x05, 0, 1, 't', 0, 0}, nil, MalformedPacket},
	// [MQTT-1.5.4-2] U+0000 in a string.
	{"publish nul", V311, []byte{0x30, 0x03, 0, 1, 0}, nil, MalformedPacket},
	// v5 topic alias 0 [MQTT-3.3.2-8].
	{"publish alias 0", V5, []byte{0x30, 0x07, 0, 1, 't', 3, 0x23, 0, 0}, nil, TopicAliasInvalid},
	// v5 duplicated property.
	{"publish dup prop", V5, []byte{0x30, 0x0e, 0, 1, 't', 10, 0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2}, nil, ProtocolError},
	{"puback v311", V311, []byte{0x40, 0x02, 0, 9}, &Ack{Kind: PUBACK, PacketID: 9}, 0},
	{"pubrec v5 code", V5, []byte{0x50, 0x03, 0, 9, 0x10}, &Ack{Kind: PUBREC, PacketID: 9, ReasonCode: NoMatchingSubscribers}, 0},
	// [MQTT-3.6.1-1] PUBREL flags must be 0010.
	{"pubrel bad flags", V311, []byte{0x60, 0x02, 0, 1}, nil, MalformedPacket},
	{"pubrel", V311, []byte{0x62, 0x02, 0, 1}, &Ack{Kind: PUBREL, PacketID: 1}, 0},
	{"subscribe v311", V311, []byte{0x82, 0x08, 0, 5, 0, 3, 'a', '/', '+', 1},
		&Subscribe{PacketID: 5, Subscriptions: []Subscription{{Filter: "a/+", QoS: 1}}}, 0},
	{"subscribe v5 options", V5, []byte{0x82, 0x09, 0, 5, 2, 0x0b, 7, 0, 1, '#', 0x2e},
		&Subscribe{PacketID: 5, Properties: Properties{SubscriptionIDs: []uint32{7}},
			Subscriptions: []Subscription{{Filter: "#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}}, 0},
	// [MQTT-3.8.3-3] no filters.
	{"subscribe empty", V311, []byte{0x82, 0x02, 0, 5}, nil, ProtocolError},
	// [MQTT-3-8.3-4] reserved option bits in 3.1.1.
	{"subscribe reserved v311", V311, []byte{0x82, 0x06, 0, 5, 0, 1, 'a', 0x05}, nil, MalformedPacket},
	{"suback v311", V311, []byte{0x90, 0x04, 0, 5, 0x01, 0x80}, &Suback{Kind: SUBACK, PacketID: 5, Reasons: []ReasonCode{1, 0x80}}, 0},
	{"unsubscribe", V311, []byte{0xa2, 0x05, 0, 5, 0, 1, 'a'}, &Unsubscribe{PacketID: 5, Filters: []string{"a"}}, 0},
	{"unsuback v5", V5, []byte{0xb0, 0x04, 0, 5, 0, 0x11}, &Suback{Kind: UNSUBACK, PacketID: 5, Reasons: []ReasonCode{0x11}}, 0},
	{"pingreq", V311, []byte{0xc0, 0x00}, &Pingreq{}, 0},
	{"pingresp", V311, []byte{0xd0, 0x00}, &Pingresp{}, 0},
	{"disconnect v5 empty", V5, []byte{0xe0, 0x00}, &Disconnect{}, 0},
	{"disconnect v5 will", V5, []byte{0xe0, 0x01, 0x04}, &Disconnect{ReasonCode: DisconnectWithWill}, 0},
	{"disconnect reserved flags", V311, []byte{0xe1, 0x00}, nil, MalformedPacket},
	{"auth v5", V5, []byte{0xf0, 0x02, 0x18, 0x00}, &Auth{ReasonCode: ContinueAuthentication}, 0},
	{"auth v311", V311, []byte{0xf0, 0x00}, nil, ProtocolError},
	{"reserved type 0", V311, []byte{0x00, 0x00}, nil, MalformedPacket},
	// [MQTT-1.5.5-1] a fifth remaining-length byte.
	{"varint too long", V311, []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, nil, MalformedPacket},
	{"trailing bytes", V311, []byte{0xc0, 0x01, 0x00}, nil, MalformedPacket},
}

func TestGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			p, err := Read(bufio.NewReader(bytes.NewReader(g.wire)), g.version, 0)
			if g.err != 0 {
				if !errors.Is(err, g.err) {
					t.Fatalf("err = %v, want %v", err, g.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(p), normalize(g.want)) {
				t.Fatalf("decoded %#v\nwant %#v", p, g.want)
			}
			// Re-encoding gives back the same bytes.
			if got := p.Encode(nil, g.version); !bytes.Equal(got, g.wire) {
				t.Fatalf("encode = % x\nwant     % x", got, g.wire)
			}
		})
	}
}

// normalize turns empty slices into nil so DeepEqual compares meaning.
func normalize(p Packet) Packet {
	if pub, ok := p.(*Publish); ok && len(pub.Payload) == 0 {
		c := *pub
		c.Payload = nil
		return &c
	}
	return p
}

func TestMaximumPacketSizeCheckedBeforeBody(t *testing.T) {
	// A header announcing 200 MB followed by nothing: the size check must
	// fire without reading (or allocating) the body.
	wire := []byte{0x30, 0x80, 0x80, 0x80, 0x60}
	_, err := Read(bufio.NewReader(bytes.NewReader(wire)), V5, 1024)
	if !errors.Is(err, PacketTooLarge) {
		t.Fatalf("err = %v, want PacketTooLarge", err)
	}
}

func TestValidTopicFilter(t *testing.T) {
	for f, ok := range map[string]bool{"a/b": true, "#": true, "a/#": true, "+/+": true, "a/#/b": false,
		"a#": false, "a/b+": false, "": false, "+": true, "/": true, "$SYS/#": true} {
		if ValidTopicFilter(f) != ok {
			t.Errorf("ValidTopicFilter(%q) = %v", f, !ok)
		}
	}
}

func TestReasonCodeError(t *testing.T) {
	var err error = &Error{Code: NotAuthorized, Text: "x"}
	if !errors.Is(err, NotAuthorized) || errors.Is(err, Banned) {
		t.Fatal("errors.Is on reason codes")
	}
	if V3ConnackCode(BadUserNameOrPassword) != V3BadUserNameOrPassword {
		t.Fatal("v3 mapping")
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder, whole and split in two
// halves across a pipe-like reader; a decoded packet must re-encode and
// decode again.
func FuzzDecode(f *testing.F) {
	for _, g := range golden {
		f.Add(g.version, g.wire, len(g.wire)/2)
	}
	f.Fuzz(func(t *testing.T, version byte, wire []byte, split int) {
		if version != V5 {
			version = V311
		}
		if split < 0 || split > len(wire) {
			split = len(wire) / 2
		}
		whole, err1 := Read(bufio.NewReader(bytes.NewReader(wire)), version, 1<<16)
		halves := bufio.NewReader(&twoHalves{a: wire[:split], b: wire[split:]})
		parted, err2 := Read(halves, version, 1<<16)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("whole err %v, halves err %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !reflect.DeepEqual(whole, parted) {
			t.Fatalf("whole %#v != halves %#v", whole, parted)
		}
		v := version
		if c, ok := whole.(*Connect); ok {
			v = c.ProtocolLevel
		}
		again, err := Read(bufio.NewReader(bytes.NewReader(whole.Encode(nil, v))), v, 0)
		if err != nil {
			t.Fatalf("re-decode of %#v: %v", whole, err)
		}
		if again.Type() != whole.Type() {
			t.Fatalf("type changed")
		}
	})
}

// twoHalves delivers a then b in separate reads, as a TCP stream might.
type twoHalves struct{ a, b []byte }

func (r *twoHalves) Read(p []byte) (int, error) {
	if len(r.a) > 0 {
		n := copy(p, r.a)
		r.a = r.a[n:]
		return n, nil
	}
	if len(r.b) > 0 {
		n := copy(p, r.b)
		r.b = r.b[n:]
		return n, nil
	}
	return 0, errEOF
}

var errEOF = io.EOF
