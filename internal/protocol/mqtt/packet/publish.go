package packet

import "strings"

// Publish is the PUBLISH packet.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string // empty in v5 when a Topic Alias stands for it
	PacketID   uint16 // only for QoS > 0
	Properties Properties
	Payload    []byte
}

// Type implements Packet.
func (*Publish) Type() byte { return PUBLISH }

func decodePublish(d *decoder, flags, version byte) *Publish {
	p := &Publish{Dup: flags&0x08 != 0, QoS: flags >> 1 & 0x03, Retain: flags&0x01 != 0}
	if p.QoS == 3 {
		d.fail(errf(MalformedPacket, "PUBLISH with QoS 3 [MQTT-3.3.1-4]"))
		return p
	}
	if p.QoS == 0 && p.Dup {
		d.fail(errf(MalformedPacket, "DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2]"))
		return p
	}
	p.Topic = d.string("topic name")
	if p.QoS > 0 {
		p.PacketID = d.uint16("packet identifier")
		if p.PacketID == 0 && d.err == nil {
			d.fail(errf(MalformedPacket, "packet identifier 0 [MQTT-2.2.1-3]"))
		}
	}
	if version == V5 {
		p.Properties = decodeProps(d)
	}
	if d.err != nil {
		return p
	}
	if strings.ContainsAny(p.Topic, "+#") {
		d.fail(errf(TopicNameInvalid, "wildcard in topic name %q [MQTT-3.3.2-2]", p.Topic))
		return p
	}
	if p.Topic == "" && (version != V5 || p.Properties.TopicAlias == 0) {
		d.fail(errf(ProtocolError, "empty topic name without topic alias [MQTT-4.7.3-1]"))
		return p
	}
	// The payload is the rest of the packet; it may be empty.
	p.Payload = d.buf
	d.buf = nil
	return p
}

// Encode implements Packet.
func (p *Publish) Encode(dst []byte, version byte) []byte {
	first := PUBLISH<<4 | p.QoS<<1
	if p.Dup {
		first |= 0x08
	}
	if p.Retain {
		first |= 0x01
	}
	size := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		size += 2
	}
	var props []byte
	if version == V5 {
		props = p.Properties.appendBody(nil)
		size += varintLen(len(props)) + len(props)
	}
	// PUBLISH is the hot path: write the header and body straight into dst
	// instead of building a scratch body.
	dst = append(dst, first)
	dst = appendVarint(dst, size)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if version == V5 {
		dst = appendVarint(dst, len(props))
		dst = append(dst, props...)
	}
	return append(dst, p.Payload...)
}

// Ack is PUBACK, PUBREC, PUBREL or PUBCOMP (they share one layout).
type Ack struct {
	Kind       byte // PUBACK, PUBREC, PUBREL or PUBCOMP
	PacketID   uint16
	ReasonCode ReasonCode // v5 only
	Properties Properties // v5 only
}

// Type implements Packet.
func (a *Ack) Type() byte { return a.Kind }

func decodeAck(d *decoder, kind, version byte) *Ack {
	a := &Ack{Kind: kind}
	a.PacketID = d.uint16("packet identifier")
	if a.PacketID == 0 && d.err == nil {
		d.fail(errf(MalformedPacket, "packet identifier 0 [MQTT-2.2.1-3]"))
	}
	// v5: the reason code and properties may be omitted when the code is 0
	// and there are no properties [MQTT-3.4.2.1].
	if version == V5 && len(d.buf) > 0 {
		a.ReasonCode = ReasonCode(d.byte("reason code"))
		if len(d.buf) > 0 {
			a.Properties = decodeProps(d)
		}
	}
	return a
}

// Encode implements Packet.
func (a *Ack) Encode(dst []byte, version byte) []byte {
	first := a.Kind << 4
	if a.Kind == PUBREL {
		first |= 0x02
	}
	b := appendUint16(nil, a.PacketID)
	if version == V5 {
		props := a.Properties.appendBody(nil)
		if a.ReasonCode != 0 || len(props) > 0 {
			b = append(b, byte(a.ReasonCode))
		}
		if len(props) > 0 {
			b = appendVarint(b, len(props))
			b = append(b, props...)
		}
	}
	return frame(dst, first, b)
}

// ValidTopicName reports whether s may be published to: non-empty, no
// wildcard characters [MQTT-3.3.2-2], valid UTF-8 without U+0000.
func ValidTopicName(s string) bool {
	return s != "" && !strings.ContainsAny(s, "+#") && validString([]byte(s))
}

// ValidTopicFilter reports whether s is a well-formed filter: non-empty
// [MQTT-4.7.3-1], '#' only as the whole last level [MQTT-4.7.1-2], '+' only
// as a whole level [MQTT-4.7.1-3].
func ValidTopicFilter(s string) bool {
	if s == "" || !validString([]byte(s)) {
		return false
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}
