package packet

// Property identifiers (MQTT 5.0 section 2.2.2.2).
const (
	propPayloadFormat        = 0x01
	propMessageExpiry        = 0x02
	propContentType          = 0x03
	propResponseTopic        = 0x08
	propCorrelationData      = 0x09
	propSubscriptionID       = 0x0B
	propSessionExpiry        = 0x11
	propAssignedClientID     = 0x12
	propServerKeepAlive      = 0x13
	propAuthMethod           = 0x15
	propAuthData             = 0x16
	propRequestProblemInfo   = 0x17
	propWillDelay            = 0x18
	propRequestResponseInfo  = 0x19
	propResponseInfo         = 0x1A
	propServerReference      = 0x1C
	propReasonString         = 0x1F
	propReceiveMaximum       = 0x21
	propTopicAliasMaximum    = 0x22
	propTopicAlias           = 0x23
	propMaximumQoS           = 0x24
	propRetainAvailable      = 0x25
	propUserProperty         = 0x26
	propMaximumPacketSize    = 0x27
	propWildcardSubAvailable = 0x28
	propSubIDAvailable       = 0x29
	propSharedSubAvailable   = 0x2A
)

// UserProperty is one name/value pair; order and duplicates are kept
// [MQTT-3.3.2-18].
type UserProperty struct{ Key, Value string }

// Properties are the MQTT 5 properties of any packet. Pointers mark the
// properties whose absence differs from their zero value. Which property
// is allowed in which packet is not enforced on decode beyond what matters
// to the session; encoders emit whatever is set.
type Properties struct {
	PayloadFormat        *byte
	MessageExpiry        *uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // PUBLISH may carry several, SUBSCRIBE one
	SessionExpiry        *uint32
	AssignedClientID     string
	ServerKeepAlive      *uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   *byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16 // 0 = absent (0 is a protocol error on the wire)
	TopicAliasMaximum    uint16
	TopicAlias           uint16 // 0 = absent
	MaximumQoS           *byte
	RetainAvailable      *byte
	User                 []UserProperty
	MaximumPacketSize    uint32 // 0 = absent
	WildcardSubAvailable *byte
	SubIDAvailable       *byte
	SharedSubAvailable   *byte
}

// Ptr returns a pointer to v, for the optional properties.
func Ptr[T any](v T) *T { return &v }

// decodeProps reads a property length and the properties. A property other
// than User Property or Subscription Identifier appearing twice is a
// protocol error [MQTT-2.2.2-2 and the "more than once" rules per packet].
func decodeProps(d *decoder) Properties {
	var p Properties
	n := int(d.varint("property length"))
	if d.err != nil {
		return p
	}
	if n > len(d.buf) {
		d.short("properties")
		return p
	}
	sub := &decoder{buf: d.buf[:n]}
	d.buf = d.buf[n:]
	var seen [64]bool
	for len(sub.buf) > 0 && sub.err == nil {
		id := sub.varint("property identifier")
		if sub.err != nil {
			break
		}
		if id < uint32(len(seen)) && id != propUserProperty && id != propSubscriptionID {
			if seen[id] {
				sub.fail(errf(ProtocolError, "property 0x%02X included more than once", id))
				break
			}
			seen[id] = true
		}
		switch id {
		case propPayloadFormat:
			v := sub.byte("payload format indicator")
			if v > 1 {
				sub.fail(errf(ProtocolError, "payload format indicator %d", v))
			}
			p.PayloadFormat = &v
		case propMessageExpiry:
			p.MessageExpiry = Ptr(sub.uint32("message expiry interval"))
		case propContentType:
			p.ContentType = sub.string("content type")
		case propResponseTopic:
			p.ResponseTopic = sub.string("response topic")
		case propCorrelationData:
			p.CorrelationData = sub.binary("correlation data")
		case propSubscriptionID:
			v := sub.varint("subscription identifier")
			if v == 0 && sub.err == nil {
				sub.fail(errf(ProtocolError, "subscription identifier 0 [MQTT-3.8.2.1.2]"))
			}
			p.SubscriptionIDs = append(p.SubscriptionIDs, v)
		case propSessionExpiry:
			p.SessionExpiry = Ptr(sub.uint32("session expiry interval"))
		case propAssignedClientID:
			p.AssignedClientID = sub.string("assigned client identifier")
		case propServerKeepAlive:
			p.ServerKeepAlive = Ptr(sub.uint16("server keep alive"))
		case propAuthMethod:
			p.AuthMethod = sub.string("authentication method")
		case propAuthData:
			p.AuthData = sub.binary("authentication data")
		case propRequestProblemInfo:
			v := sub.byte("request problem information")
			if v > 1 {
				sub.fail(errf(ProtocolError, "request problem information %d", v))
			}
			p.RequestProblemInfo = &v
		case propWillDelay:
			p.WillDelay = sub.uint32("will delay interval")
		case propRequestResponseInfo:
			p.RequestResponseInfo = sub.byte("request response information")
			if p.RequestResponseInfo > 1 {
				sub.fail(errf(ProtocolError, "request response information %d", p.RequestResponseInfo))
			}
		case propResponseInfo:
			p.ResponseInfo = sub.string("response information")
		case propServerReference:
			p.ServerReference = sub.string("server reference")
		case propReasonString:
			p.ReasonString = sub.string("reason string")
		case propReceiveMaximum:
			p.ReceiveMaximum = sub.uint16("receive maximum")
			if p.ReceiveMaximum == 0 && sub.err == nil {
				sub.fail(errf(ProtocolError, "receive maximum 0 [MQTT-3.1.2.11.3]"))
			}
		case propTopicAliasMaximum:
			p.TopicAliasMaximum = sub.uint16("topic alias maximum")
		case propTopicAlias:
			p.TopicAlias = sub.uint16("topic alias")
			if p.TopicAlias == 0 && sub.err == nil {
				sub.fail(errf(TopicAliasInvalid, "topic alias 0 [MQTT-3.3.2-8]"))
			}
		case propMaximumQoS:
			v := sub.byte("maximum QoS")
			p.MaximumQoS = &v
		case propRetainAvailable:
			v := sub.byte("retain available")
			p.RetainAvailable = &v
		case propUserProperty:
			k := sub.string("user property name")
			v := sub.string("user property value")
			p.User = append(p.User, UserProperty{k, v})
		case propMaximumPacketSize:
			p.MaximumPacketSize = sub.uint32("maximum packet size")
			if p.MaximumPacketSize == 0 && sub.err == nil {
				sub.fail(errf(ProtocolError, "maximum packet size 0 [MQTT-3.1.2.11.4]"))
			}
		case propWildcardSubAvailable:
			p.WildcardSubAvailable = Ptr(sub.byte("wildcard subscription available"))
		case propSubIDAvailable:
			p.SubIDAvailable = Ptr(sub.byte("subscription identifiers available"))
		case propSharedSubAvailable:
			p.SharedSubAvailable = Ptr(sub.byte("shared subscription available"))
		default:
			sub.fail(errf(MalformedPacket, "unknown property identifier 0x%02X", id))
		}
	}
	if sub.err != nil {
		d.fail(sub.err)
	}
	return p
}

// appendProps appends the property length and the properties.
func appendProps(dst []byte, p *Properties) []byte {
	var b []byte
	if p != nil {
		b = p.appendBody(nil)
	}
	dst = appendVarint(dst, len(b))
	return append(dst, b...)
}

func (p *Properties) appendBody(b []byte) []byte {
	if p.PayloadFormat != nil {
		b = append(b, propPayloadFormat, *p.PayloadFormat)
	}
	if p.MessageExpiry != nil {
		b = appendUint32(append(b, propMessageExpiry), *p.MessageExpiry)
	}
	if p.ContentType != "" {
		b = appendString(append(b, propContentType), p.ContentType)
	}
	if p.ResponseTopic != "" {
		b = appendString(append(b, propResponseTopic), p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		b = appendBinary(append(b, propCorrelationData), p.CorrelationData)
	}
	for _, id := range p.SubscriptionIDs {
		b = appendVarint(append(b, propSubscriptionID), int(id))
	}
	if p.SessionExpiry != nil {
		b = appendUint32(append(b, propSessionExpiry), *p.SessionExpiry)
	}
	if p.AssignedClientID != "" {
		b = appendString(append(b, propAssignedClientID), p.AssignedClientID)
	}
	if p.ServerKeepAlive != nil {
		b = appendUint16(append(b, propServerKeepAlive), *p.ServerKeepAlive)
	}
	if p.AuthMethod != "" {
		b = appendString(append(b, propAuthMethod), p.AuthMethod)
	}
	if p.AuthData != nil {
		b = appendBinary(append(b, propAuthData), p.AuthData)
	}
	if p.RequestProblemInfo != nil {
		b = append(b, propRequestProblemInfo, *p.RequestProblemInfo)
	}
	if p.WillDelay != 0 {
		b = appendUint32(append(b, propWillDelay), p.WillDelay)
	}
	if p.RequestResponseInfo != 0 {
		b = append(b, propRequestResponseInfo, p.RequestResponseInfo)
	}
	if p.ResponseInfo != "" {
		b = appendString(append(b, propResponseInfo), p.ResponseInfo)
	}
	if p.ServerReference != "" {
		b = appendString(append(b, propServerReference), p.ServerReference)
	}
	if p.ReasonString != "" {
		b = appendString(append(b, propReasonString), p.ReasonString)
	}
	if p.ReceiveMaximum != 0 {
		b = appendUint16(append(b, propReceiveMaximum), p.ReceiveMaximum)
	}
	if p.TopicAliasMaximum != 0 {
		b = appendUint16(append(b, propTopicAliasMaximum), p.TopicAliasMaximum)
	}
	if p.TopicAlias != 0 {
		b = appendUint16(append(b, propTopicAlias), p.TopicAlias)
	}
	if p.MaximumQoS != nil {
		b = append(b, propMaximumQoS, *p.MaximumQoS)
	}
	if p.RetainAvailable != nil {
		b = append(b, propRetainAvailable, *p.RetainAvailable)
	}
	for _, u := range p.User {
		b = appendString(appendString(append(b, propUserProperty), u.Key), u.Value)
	}
	if p.MaximumPacketSize != 0 {
		b = appendUint32(append(b, propMaximumPacketSize), p.MaximumPacketSize)
	}
	if p.WildcardSubAvailable != nil {
		b = append(b, propWildcardSubAvailable, *p.WildcardSubAvailable)
	}
	if p.SubIDAvailable != nil {
		b = append(b, propSubIDAvailable, *p.SubIDAvailable)
	}
	if p.SharedSubAvailable != nil {
		b = append(b, propSharedSubAvailable, *p.SharedSubAvailable)
	}
	return b
}
