package packet

// Connect is the CONNECT packet (3.1.1 section 3.1, 5.0 section 3.1).
type Connect struct {
	ProtocolName  string
	ProtocolLevel byte
	CleanStart    bool // "clean session" in 3.1.1
	KeepAlive     uint16
	Properties    Properties
	ClientID      string
	Will          *Will
	UsernameFlag  bool
	Username      string
	PasswordFlag  bool
	Password      []byte
}

// Will is the last will carried in CONNECT.
type Will struct {
	QoS        byte
	Retain     bool
	Properties Properties // v5 will properties (Will Delay Interval, ...)
	Topic      string
	Payload    []byte
}

// Type implements Packet.
func (*Connect) Type() byte { return CONNECT }

func decodeConnect(d *decoder) *Connect {
	c := &Connect{}
	c.ProtocolName = d.string("protocol name")
	c.ProtocolLevel = d.byte("protocol level")
	if d.err != nil {
		return c
	}
	// [MQTT-3.1.2-1] the name is "MQTT" (v3.1: "MQIsdp"); [MQTT-3.1.2-2] an
	// unsupported level is refused. The partly decoded packet is returned
	// with the error so the session can answer in the client's dialect.
	switch {
	case c.ProtocolName == "MQTT" && (c.ProtocolLevel == V311 || c.ProtocolLevel == V5):
	case c.ProtocolName == "MQIsdp" && c.ProtocolLevel == V31:
	default:
		d.fail(errf(UnsupportedProtocolVersion, "protocol %q level %d [MQTT-3.1.2-1][MQTT-3.1.2-2]", c.ProtocolName, c.ProtocolLevel))
		return c
	}
	flags := d.byte("connect flags")
	c.KeepAlive = d.uint16("keep alive")
	if d.err != nil {
		return c
	}
	if flags&0x01 != 0 {
		d.fail(errf(MalformedPacket, "reserved connect flag set [MQTT-3.1.2-3]"))
		return c
	}
	c.CleanStart = flags&0x02 != 0
	willFlag := flags&0x04 != 0
	willQoS := flags >> 3 & 0x03
	willRetain := flags&0x20 != 0
	c.PasswordFlag = flags&0x40 != 0
	c.UsernameFlag = flags&0x80 != 0
	if willQoS == 3 {
		d.fail(errf(MalformedPacket, "will QoS 3 [MQTT-3.1.2-14]"))
		return c
	}
	if !willFlag && (willQoS != 0 || willRetain) {
		d.fail(errf(MalformedPacket, "will QoS/retain without will flag [MQTT-3.1.2-13][MQTT-3.1.2-15]"))
		return c
	}
	if c.ProtocolLevel != V5 && c.PasswordFlag && !c.UsernameFlag {
		d.fail(errf(MalformedPacket, "password without user name [MQTT-3.1.2-22]"))
		return c
	}
	if c.ProtocolLevel == V5 {
		c.Properties = decodeProps(d)
	}
	c.ClientID = d.string("client identifier")
	if willFlag {
		w := &Will{QoS: willQoS, Retain: willRetain}
		if c.ProtocolLevel == V5 {
			w.Properties = decodeProps(d)
		}
		w.Topic = d.string("will topic")
		w.Payload = d.binary("will payload")
		if d.err == nil && !ValidTopicName(w.Topic) {
			d.fail(errf(TopicNameInvalid, "will topic %q [MQTT-3.1.3-11]", w.Topic))
		}
		c.Will = w
	}
	if c.UsernameFlag {
		c.Username = d.string("user name")
	}
	if c.PasswordFlag {
		c.Password = d.binary("password")
	}
	return c
}

// Encode implements Packet. The version argument is ignored: CONNECT
// carries its own ProtocolLevel.
func (c *Connect) Encode(dst []byte, _ byte) []byte {
	b := appendString(nil, c.ProtocolName)
	b = append(b, c.ProtocolLevel)
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	if c.Will != nil {
		flags |= 0x04 | c.Will.QoS<<3
		if c.Will.Retain {
			flags |= 0x20
		}
	}
	if c.PasswordFlag {
		flags |= 0x40
	}
	if c.UsernameFlag {
		flags |= 0x80
	}
	b = append(b, flags)
	b = appendUint16(b, c.KeepAlive)
	v5 := c.ProtocolLevel == V5
	if v5 {
		b = appendProps(b, &c.Properties)
	}
	b = appendString(b, c.ClientID)
	if c.Will != nil {
		if v5 {
			b = appendProps(b, &c.Will.Properties)
		}
		b = appendString(b, c.Will.Topic)
		b = appendBinary(b, c.Will.Payload)
	}
	if c.UsernameFlag {
		b = appendString(b, c.Username)
	}
	if c.PasswordFlag {
		b = appendBinary(b, c.Password)
	}
	return frame(dst, CONNECT<<4, b)
}

// Connack is the CONNACK packet. In 3.1.1 ReasonCode holds the return code
// (see V3ConnackCode).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Type implements Packet.
func (*Connack) Type() byte { return CONNACK }

func decodeConnack(d *decoder, version byte) *Connack {
	c := &Connack{}
	flags := d.byte("connack flags")
	if flags&0xfe != 0 && d.err == nil {
		d.fail(errf(MalformedPacket, "reserved connack flags [MQTT-3.2.2-1]"))
	}
	c.SessionPresent = flags&1 != 0
	c.ReasonCode = ReasonCode(d.byte("connect reason code"))
	if version == V5 {
		c.Properties = decodeProps(d)
	}
	return c
}

// Encode implements Packet.
func (c *Connack) Encode(dst []byte, version byte) []byte {
	var b []byte
	if c.SessionPresent {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, byte(c.ReasonCode))
	if version == V5 {
		b = appendProps(b, &c.Properties)
	}
	return frame(dst, CONNACK<<4, b)
}
