package packet

import "fmt"

// ReasonCode is an MQTT 5 reason code (MQTT 5.0 section 2.4). A reason code
// of 0x80 or above is a failure, and as such is an error value, so a decoder
// or a session can return one and the connection can answer with it.
// MQTT 3.1.1 has only CONNACK return codes and SUBACK 0x80; the session maps
// the v5 codes onto them (see V3ConnackCode).
type ReasonCode byte

// Reason codes (MQTT 5.0 table 2-6).
const (
	Success                     ReasonCode = 0x00 // also Normal disconnection, Granted QoS 0
	GrantedQoS1                 ReasonCode = 0x01
	GrantedQoS2                 ReasonCode = 0x02
	DisconnectWithWill          ReasonCode = 0x04
	NoMatchingSubscribers       ReasonCode = 0x10
	NoSubscriptionExisted       ReasonCode = 0x11
	ContinueAuthentication      ReasonCode = 0x18
	ReAuthenticate              ReasonCode = 0x19
	UnspecifiedError            ReasonCode = 0x80
	MalformedPacket             ReasonCode = 0x81
	ProtocolError               ReasonCode = 0x82
	ImplementationSpecificError ReasonCode = 0x83
	UnsupportedProtocolVersion  ReasonCode = 0x84
	ClientIdentifierNotValid    ReasonCode = 0x85
	BadUserNameOrPassword       ReasonCode = 0x86
	NotAuthorized               ReasonCode = 0x87
	ServerUnavailable           ReasonCode = 0x88
	ServerBusy                  ReasonCode = 0x89
	Banned                      ReasonCode = 0x8A
	ServerShuttingDown          ReasonCode = 0x8B
	BadAuthenticationMethod     ReasonCode = 0x8C
	KeepAliveTimeout            ReasonCode = 0x8D
	SessionTakenOver            ReasonCode = 0x8E
	TopicFilterInvalid          ReasonCode = 0x8F
	TopicNameInvalid            ReasonCode = 0x90
	PacketIdentifierInUse       ReasonCode = 0x91
	PacketIdentifierNotFound    ReasonCode = 0x92
	ReceiveMaximumExceeded      ReasonCode = 0x93
	TopicAliasInvalid           ReasonCode = 0x94
	PacketTooLarge              ReasonCode = 0x95
	MessageRateTooHigh          ReasonCode = 0x96
	QuotaExceeded               ReasonCode = 0x97
	AdministrativeAction        ReasonCode = 0x98
	PayloadFormatInvalid        ReasonCode = 0x99
	RetainNotSupported          ReasonCode = 0x9A
	QoSNotSupported             ReasonCode = 0x9B
	UseAnotherServer            ReasonCode = 0x9C
	ServerMoved                 ReasonCode = 0x9D
	SharedSubsNotSupported      ReasonCode = 0x9E
	ConnectionRateExceeded      ReasonCode = 0x9F
	MaximumConnectTime          ReasonCode = 0xA0
	SubIDsNotSupported          ReasonCode = 0xA1
	WildcardSubsNotSupported    ReasonCode = 0xA2
)

var reasonText = map[ReasonCode]string{
	Success: "success", GrantedQoS1: "granted QoS 1", GrantedQoS2: "granted QoS 2",
	DisconnectWithWill: "disconnect with will message", NoMatchingSubscribers: "no matching subscribers",
	NoSubscriptionExisted: "no subscription existed", ContinueAuthentication: "continue authentication",
	ReAuthenticate: "re-authenticate", UnspecifiedError: "unspecified error", MalformedPacket: "malformed packet",
	ProtocolError: "protocol error", ImplementationSpecificError: "implementation specific error",
	UnsupportedProtocolVersion: "unsupported protocol version", ClientIdentifierNotValid: "client identifier not valid",
	BadUserNameOrPassword: "bad user name or password", NotAuthorized: "not authorized",
	ServerUnavailable: "server unavailable", ServerBusy: "server busy", Banned: "banned",
	ServerShuttingDown: "server shutting down", BadAuthenticationMethod: "bad authentication method",
	KeepAliveTimeout: "keep alive timeout", SessionTakenOver: "session taken over",
	TopicFilterInvalid: "topic filter invalid", TopicNameInvalid: "topic name invalid",
	PacketIdentifierInUse: "packet identifier in use", PacketIdentifierNotFound: "packet identifier not found",
	ReceiveMaximumExceeded: "receive maximum exceeded", TopicAliasInvalid: "topic alias invalid",
	PacketTooLarge: "packet too large", MessageRateTooHigh: "message rate too high", QuotaExceeded: "quota exceeded",
	AdministrativeAction: "administrative action", PayloadFormatInvalid: "payload format invalid",
	RetainNotSupported: "retain not supported", QoSNotSupported: "QoS not supported",
	UseAnotherServer: "use another server", ServerMoved: "server moved",
	SharedSubsNotSupported: "shared subscriptions not supported", ConnectionRateExceeded: "connection rate exceeded",
	MaximumConnectTime: "maximum connect time", SubIDsNotSupported: "subscription identifiers not supported",
	WildcardSubsNotSupported: "wildcard subscriptions not supported",
}

func (c ReasonCode) Error() string {
	if s, ok := reasonText[c]; ok {
		return s
	}
	return fmt.Sprintf("reason code 0x%02X", byte(c))
}

// Failed reports whether the code signals a failure (0x80 and above).
func (c ReasonCode) Failed() bool { return c >= 0x80 }

// Error is a decoding or protocol failure: the reason code to answer with
// plus what exactly was wrong, for logs and reason strings.
// errors.Is(err, packet.MalformedPacket) matches on the code.
type Error struct {
	Code ReasonCode
	Text string
}

func (e *Error) Error() string { return e.Code.Error() + ": " + e.Text }

// Unwrap exposes the reason code for errors.Is / errors.As.
func (e *Error) Unwrap() error { return e.Code }

func errf(code ReasonCode, format string, args ...any) error {
	return &Error{Code: code, Text: fmt.Sprintf(format, args...)}
}

// MQTT 3.1.1 CONNACK return codes (MQTT 3.1.1 table 3.1).
const (
	V3Accepted                    byte = 0x00
	V3UnacceptableProtocolVersion byte = 0x01
	V3IdentifierRejected          byte = 0x02
	V3ServerUnavailable           byte = 0x03
	V3BadUserNameOrPassword       byte = 0x04
	V3NotAuthorized               byte = 0x05
)

// V3ConnackCode maps a v5 CONNACK reason code onto the 3.1.1 return code.
func V3ConnackCode(c ReasonCode) byte {
	switch c {
	case Success:
		return V3Accepted
	case UnsupportedProtocolVersion:
		return V3UnacceptableProtocolVersion
	case ClientIdentifierNotValid:
		return V3IdentifierRejected
	case BadUserNameOrPassword:
		return V3BadUserNameOrPassword
	case NotAuthorized, Banned, BadAuthenticationMethod:
		return V3NotAuthorized
	default:
		return V3ServerUnavailable
	}
}
