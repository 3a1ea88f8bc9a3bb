package mqtt

import "fmt"

// ReasonCode is an MQTT 5.0 reason code, or in 3.x a CONNACK return code or SUBACK granted QoS.
type ReasonCode byte

// MQTT 5.0 reason codes [MQTT-2.4].
const (
	Success                             ReasonCode = 0x00 // also Normal Disconnection, Granted QoS 0
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWill                  ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

// MQTT 3.x CONNACK return codes [MQTT-3.2.2.3].
const (
	V3Accepted                    ReasonCode = 0x00
	V3UnacceptableProtocolVersion ReasonCode = 0x01
	V3IdentifierRejected          ReasonCode = 0x02
	V3ServerUnavailable           ReasonCode = 0x03
	V3BadUsernameOrPassword       ReasonCode = 0x04
	V3NotAuthorized               ReasonCode = 0x05
	V3SubackFailure               ReasonCode = 0x80 // SUBACK failure return code
)

var reasonNames = map[ReasonCode]string{
	0x00: "success", 0x01: "granted qos 1", 0x02: "granted qos 2", 0x04: "disconnect with will message",
	0x10: "no matching subscribers", 0x11: "no subscription existed", 0x18: "continue authentication",
	0x19: "re-authenticate", 0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
	0x8C: "bad authentication method", 0x8D: "keep alive timeout", 0x8E: "session taken over",
	0x8F: "topic filter invalid", 0x90: "topic name invalid", 0x91: "packet identifier in use",
	0x92: "packet identifier not found", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
	0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
	0x98: "administrative action", 0x99: "payload format invalid", 0x9A: "retain not supported",
	0x9B: "qos not supported", 0x9C: "use another server", 0x9D: "server moved",
	0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
	0xA0: "maximum connect time", 0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

func (r ReasonCode) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return fmt.Sprintf("reason code 0x%02X", byte(r))
}

// IsError reports whether r signals failure (0x80 and above) [MQTT-2.4].
func (r ReasonCode) IsError() bool { return r >= 0x80 }

// Error is a decoding or protocol error with the reason code the receiver should answer with.
// Msg says what was wrong and usually ends with the normative statement it breaks.
type Error struct {
	Code ReasonCode
	Msg  string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Msg }

// Is makes errors.Is(err, ErrMalformed) and friends match any *Error of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
}

// Sentinels for errors.Is; they match any *Error with the same code.
var (
	ErrMalformed          = &Error{Code: MalformedPacket}
	ErrProtocol           = &Error{Code: ProtocolError}
	ErrPacketTooLarge     = &Error{Code: PacketTooLarge}
	ErrUnsupportedVersion = &Error{Code: UnsupportedProtocolVersion}
	ErrClientIDNotValid   = &Error{Code: ClientIdentifierNotValid}
	ErrTopicNameInvalid   = &Error{Code: TopicNameInvalid}
	ErrTopicFilterInvalid = &Error{Code: TopicFilterInvalid}
	ErrTopicAliasInvalid  = &Error{Code: TopicAliasInvalid}
)

// ErrIncomplete is returned by Parse when the buffer holds only part of a packet.
var ErrIncomplete = fmt.Errorf("mqtt: incomplete packet")

func malformed(msg string) error   { return &Error{Code: MalformedPacket, Msg: msg} }
func protocolErr(msg string) error { return &Error{Code: ProtocolError, Msg: msg} }

// rcSet is a set of reason codes, one bit per value.
type rcSet [4]uint64

func rcs(codes ...ReasonCode) (s rcSet) {
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *rcSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// The reason codes each v5 packet type may carry; anything else is a Malformed Packet.
var reasonCodesV5 = [AUTH + 1]rcSet{
	CONNACK: rcs(Success, UnspecifiedError, MalformedPacket, ProtocolError, ImplementationSpecificError,
		UnsupportedProtocolVersion, ClientIdentifierNotValid, BadUserNameOrPassword, NotAuthorized,
		ServerUnavailable, ServerBusy, Banned, BadAuthenticationMethod, TopicNameInvalid, PacketTooLarge,
		QuotaExceeded, PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer,
		ServerMoved, ConnectionRateExceeded), // [MQTT-3.2.2-8]
	PUBACK: rcs(Success, NoMatchingSubscribers, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicNameInvalid, PacketIdentifierInUse, QuotaExceeded, PayloadFormatInvalid), // [MQTT-3.4.2-1]
	PUBREC: rcs(Success, NoMatchingSubscribers, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicNameInvalid, PacketIdentifierInUse, QuotaExceeded, PayloadFormatInvalid), // [MQTT-3.5.2-1]
	PUBREL:  rcs(Success, PacketIdentifierNotFound), // [MQTT-3.6.2-1]
	PUBCOMP: rcs(Success, PacketIdentifierNotFound), // [MQTT-3.7.2-1]
	SUBACK: rcs(Success, GrantedQoS1, GrantedQoS2, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse, QuotaExceeded,
		SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported), // [MQTT-3.9.3-2]
	UNSUBACK: rcs(Success, NoSubscriptionExisted, UnspecifiedError, ImplementationSpecificError,
		NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse), // [MQTT-3.11.3-2]
	DISCONNECT: rcs(Success, DisconnectWithWill, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, NotAuthorized, ServerBusy, ServerShuttingDown, KeepAliveTimeout,
		SessionTakenOver, TopicFilterInvalid, TopicNameInvalid, ReceiveMaximumExceeded, TopicAliasInvalid,
		PacketTooLarge, MessageRateTooHigh, QuotaExceeded, AdministrativeAction, PayloadFormatInvalid,
		RetainNotSupported, QoSNotSupported, UseAnotherServer, ServerMoved,
		SharedSubscriptionsNotSupported, ConnectionRateExceeded, MaximumConnectTime,
		SubscriptionIdentifiersNotSupported, WildcardSubscriptionsNotSupported), // [MQTT-3.14.2-1]
	AUTH: rcs(Success, ContinueAuthentication, ReAuthenticate), // [MQTT-3.15.2-1]
}

// subackCodesV3 are the 3.1.1 SUBACK return codes [MQTT-3.9.3-2].
var subackCodesV3 = rcs(Success, GrantedQoS1, GrantedQoS2, V3SubackFailure)

// ValidReasonCode reports whether rc may appear in a packet of type t under version v. In 3.x
// only CONNACK (return codes 0..5) and SUBACK (0, 1, 2, 0x80) carry codes.
func ValidReasonCode(t Type, v Version, rc ReasonCode) bool {
	if v != V5 {
		switch t {
		case CONNACK:
			return rc <= V3NotAuthorized
		case SUBACK:
			return subackCodesV3.has(rc)
		}
		return rc == 0
	}
	if int(t) >= len(reasonCodesV5) {
		return false
	}
	return reasonCodesV5[t].has(rc)
}

// V3ConnackCode maps a CONNACK reason code to the 3.x return code a 3.x client understands
// (the 3.x codes 0..5 map to themselves). ok is false when no 3.x code fits; then the server
// must close the connection without a CONNACK [MQTT-3.2.2-6] (3.1.1).
func V3ConnackCode(rc ReasonCode) (code ReasonCode, ok bool) {
	switch rc {
	case Success, V3UnacceptableProtocolVersion, V3IdentifierRejected, V3ServerUnavailable,
		V3BadUsernameOrPassword, V3NotAuthorized:
		return rc, true
	case UnsupportedProtocolVersion:
		return V3UnacceptableProtocolVersion, true
	case ClientIdentifierNotValid:
		return V3IdentifierRejected, true
	case ServerUnavailable, ServerBusy, UseAnotherServer, ServerMoved:
		return V3ServerUnavailable, true
	case BadUserNameOrPassword, BadAuthenticationMethod:
		return V3BadUsernameOrPassword, true
	case NotAuthorized, Banned:
		return V3NotAuthorized, true
	}
	return 0, false
}
