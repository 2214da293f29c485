package packet

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool // v5
	RetainAsPublished bool // v5
	RetainHandling    byte // v5: 0 send retained, 1 only if new, 2 never
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID      uint16
	Properties    Properties
	Subscriptions []Subscription
}

// Type implements Packet.
func (*Subscribe) Type() byte { return SUBSCRIBE }

func decodeSubscribe(d *decoder, version byte) *Subscribe {
	s := &Subscribe{}
	s.PacketID = d.uint16("packet identifier")
	if s.PacketID == 0 && d.err == nil {
		d.fail(errf(MalformedPacket, "packet identifier 0 [MQTT-2.2.1-3]"))
	}
	if version == V5 {
		s.Properties = decodeProps(d)
	}
	for len(d.buf) > 0 && d.err == nil {
		sub := Subscription{Filter: d.string("topic filter")}
		opts := d.byte("subscription options")
		if d.err != nil {
			break
		}
		sub.QoS = opts & 0x03
		if sub.QoS == 3 {
			d.fail(errf(MalformedPacket, "subscription QoS 3 [MQTT-3.8.3-4]"))
			break
		}
		if version == V5 {
			sub.NoLocal = opts&0x04 != 0
			sub.RetainAsPublished = opts&0x08 != 0
			sub.RetainHandling = opts >> 4 & 0x03
			if sub.RetainHandling == 3 || opts&0xc0 != 0 {
				d.fail(errf(MalformedPacket, "reserved subscription options %#x [MQTT-3.8.3-5]", opts))
				break
			}
		} else if opts&0xfc != 0 {
			d.fail(errf(MalformedPacket, "reserved subscription options %#x [MQTT-3-8.3-4]", opts))
			break
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if d.err == nil && len(s.Subscriptions) == 0 {
		d.fail(errf(ProtocolError, "SUBSCRIBE without topic filters [MQTT-3.8.3-3]"))
	}
	return s
}

// Encode implements Packet.
func (s *Subscribe) Encode(dst []byte, version byte) []byte {
	b := appendUint16(nil, s.PacketID)
	if version == V5 {
		b = appendProps(b, &s.Properties)
	}
	for _, sub := range s.Subscriptions {
		b = appendString(b, sub.Filter)
		opts := sub.QoS
		if version == V5 {
			if sub.NoLocal {
				opts |= 0x04
			}
			if sub.RetainAsPublished {
				opts |= 0x08
			}
			opts |= sub.RetainHandling << 4
		}
		b = append(b, opts)
	}
	return frame(dst, SUBSCRIBE<<4|0x02, b)
}

// Suback is SUBACK or UNSUBACK: a reason code per requested filter (an
// UNSUBACK in 3.1.1 has none).
type Suback struct {
	Kind       byte // SUBACK or UNSUBACK
	PacketID   uint16
	Properties Properties
	Reasons    []ReasonCode
}

// Type implements Packet.
func (s *Suback) Type() byte { return s.Kind }

func decodeSuback(d *decoder, kind, version byte) *Suback {
	s := &Suback{Kind: kind}
	s.PacketID = d.uint16("packet identifier")
	if version == V5 {
		s.Properties = decodeProps(d)
	}
	for len(d.buf) > 0 && d.err == nil {
		s.Reasons = append(s.Reasons, ReasonCode(d.byte("reason code")))
	}
	return s
}

// Encode implements Packet.
func (s *Suback) Encode(dst []byte, version byte) []byte {
	b := appendUint16(nil, s.PacketID)
	if version == V5 {
		b = appendProps(b, &s.Properties)
	}
	if version == V5 || s.Kind == SUBACK {
		for _, r := range s.Reasons {
			b = append(b, byte(r))
		}
	}
	return frame(dst, s.Kind<<4, b)
}

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties
	Filters    []string
}

// Type implements Packet.
func (*Unsubscribe) Type() byte { return UNSUBSCRIBE }

func decodeUnsubscribe(d *decoder, version byte) *Unsubscribe {
	u := &Unsubscribe{}
	u.PacketID = d.uint16("packet identifier")
	if u.PacketID == 0 && d.err == nil {
		d.fail(errf(MalformedPacket, "packet identifier 0 [MQTT-2.2.1-3]"))
	}
	if version == V5 {
		u.Properties = decodeProps(d)
	}
	for len(d.buf) > 0 && d.err == nil {
		u.Filters = append(u.Filters, d.string("topic filter"))
	}
	if d.err == nil && len(u.Filters) == 0 {
		d.fail(errf(ProtocolError, "UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]"))
	}
	return u
}

// Encode implements Packet.
func (u *Unsubscribe) Encode(dst []byte, version byte) []byte {
	b := appendUint16(nil, u.PacketID)
	if version == V5 {
		b = appendProps(b, &u.Properties)
	}
	for _, f := range u.Filters {
		b = appendString(b, f)
	}
	return frame(dst, UNSUBSCRIBE<<4|0x02, b)
}

// Pingreq is PINGREQ.
type Pingreq struct{}

// Type implements Packet.
func (*Pingreq) Type() byte { return PINGREQ }

// Encode implements Packet.
func (*Pingreq) Encode(dst []byte, _ byte) []byte { return append(dst, PINGREQ<<4, 0) }

// Pingresp is PINGRESP.
type Pingresp struct{}

// Type implements Packet.
func (*Pingresp) Type() byte { return PINGRESP }

// Encode implements Packet.
func (*Pingresp) Encode(dst []byte, _ byte) []byte { return append(dst, PINGRESP<<4, 0) }

// Disconnect is DISCONNECT; 3.1.1 has no reason code or properties.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Disconnect) Type() byte { return DISCONNECT }

func decodeDisconnect(d *decoder, version byte) *Disconnect {
	x := &Disconnect{}
	// v5: an empty body means Normal disconnection [MQTT-3.14.2.1].
	if version == V5 && len(d.buf) > 0 {
		x.ReasonCode = ReasonCode(d.byte("reason code"))
		if len(d.buf) > 0 {
			x.Properties = decodeProps(d)
		}
	}
	return x
}

// Encode implements Packet.
func (x *Disconnect) Encode(dst []byte, version byte) []byte {
	var b []byte
	if version == V5 {
		props := x.Properties.appendBody(nil)
		if x.ReasonCode != 0 || len(props) > 0 {
			b = append(b, byte(x.ReasonCode))
		}
		if len(props) > 0 {
			b = appendVarint(b, len(props))
			b = append(b, props...)
		}
	}
	return frame(dst, DISCONNECT<<4, b)
}

// Auth is the v5 AUTH packet (enhanced authentication).
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Auth) Type() byte { return AUTH }

func decodeAuth(d *decoder) *Auth {
	a := &Auth{}
	if len(d.buf) > 0 {
		a.ReasonCode = ReasonCode(d.byte("reason code"))
		if len(d.buf) > 0 {
			a.Properties = decodeProps(d)
		}
	}
	return a
}

// Encode implements Packet.
func (a *Auth) Encode(dst []byte, _ byte) []byte {
	b := []byte{byte(a.ReasonCode)}
	b = appendProps(b, &a.Properties)
	return frame(dst, AUTH<<4, b)
}
