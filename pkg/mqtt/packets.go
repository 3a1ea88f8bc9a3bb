package mqtt

// Version is the protocol level byte of CONNECT.
type Version byte

// Protocol levels.
const (
	V31  Version = 3 // MQTT 3.1 (protocol name "MQIsdp")
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

func (v Version) String() string {
	switch v {
	case V31:
		return "3.1"
	case V311:
		return "3.1.1"
	case V5:
		return "5.0"
	}
	return "unknown"
}

// Type is a control packet type, the high nibble of the first byte.
type Type byte

// Control packet types.
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15 // MQTT 5.0 only
)

var typeNames = [...]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "INVALID"
}

// QoS levels.
const (
	QoS0 byte = 0
	QoS1 byte = 1
	QoS2 byte = 2
)

// MaxRemainingLength is the largest remaining length a variable byte integer can encode.
const MaxRemainingLength = 268_435_455

// FixedHeader is the first byte of a packet split into type and flags, plus the remaining length.
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of the first byte
	Remaining int  // length of the variable header plus payload
}

// Packet is implemented by every control packet struct.
type Packet interface {
	// Type is the packet's control type.
	Type() Type
	// AppendTo appends the packet's encoding for protocol version v to dst.
	AppendTo(dst []byte, v Version) ([]byte, error)
	// Size is the length of AppendTo's output: fixed header, variable header and payload.
	Size(v Version) int
}

// Connect is the CONNECT packet. Version tells which protocol the client asked for.
type Connect struct {
	ProtocolName string  // "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1)
	Version      Version // protocol level
	CleanStart   bool    // Clean Session in 3.1.1
	KeepAlive    uint16  // seconds
	Properties   Properties

	ClientID string

	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	WillProperties Properties // v5 only
	WillTopic      string
	WillPayload    []byte

	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
}

// Connack is the CONNACK packet. In 3.x ReasonCode holds the connect return code (0..5).
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Publish is the PUBLISH packet.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      string // empty when a v5 publisher uses a topic alias alone
	PacketID   uint16 // only for QoS > 0
	Properties Properties
	Payload    []byte
}

// Puback, Pubrec, Pubrel and Pubcomp acknowledge a QoS 1 or QoS 2 PUBLISH. In 3.x only PacketID is
// on the wire; in 5.0 a reason code 0 with no properties is encoded in the short form of
// §3.4.2.1 (remaining length 2), and a reason code with no properties without the property
// length (remaining length 3).
type (
	Puback struct {
		PacketID   uint16
		ReasonCode ReasonCode
		Properties Properties
	}
	Pubrec struct {
		PacketID   uint16
		ReasonCode ReasonCode
		Properties Properties
	}
	Pubrel struct {
		PacketID   uint16
		ReasonCode ReasonCode
		Properties Properties
	}
	Pubcomp struct {
		PacketID   uint16
		ReasonCode ReasonCode
		Properties Properties
	}
)

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	Filter            string
	QoS               byte // maximum QoS
	NoLocal           bool // v5
	RetainAsPublished bool // v5
	RetainHandling    byte // v5: 0 send retained, 1 only for new subscriptions, 2 never
}

// Subscribe is the SUBSCRIBE packet.
type Subscribe struct {
	PacketID      uint16
	Properties    Properties // v5: Subscription Identifier, User Property
	Subscriptions []Subscription
}

// Suback is the SUBACK packet: one reason code (granted QoS or failure) per subscription.
type Suback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode
}

// Unsubscribe is the UNSUBSCRIBE packet.
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties
	Filters    []string
}

// Unsuback is the UNSUBACK packet. ReasonCodes are encoded in 5.0 only.
type Unsuback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode
}

// Pingreq is the PINGREQ packet.
type Pingreq struct{}

// Pingresp is the PINGRESP packet.
type Pingresp struct{}

// Disconnect is the DISCONNECT packet. ReasonCode and Properties exist in 5.0 only.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Auth is the MQTT 5.0 AUTH packet.
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

func (*Connect) Type() Type     { return CONNECT }
func (*Connack) Type() Type     { return CONNACK }
func (*Publish) Type() Type     { return PUBLISH }
func (*Puback) Type() Type      { return PUBACK }
func (*Pubrec) Type() Type      { return PUBREC }
func (*Pubrel) Type() Type      { return PUBREL }
func (*Pubcomp) Type() Type     { return PUBCOMP }
func (*Subscribe) Type() Type   { return SUBSCRIBE }
func (*Suback) Type() Type      { return SUBACK }
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }
func (*Unsuback) Type() Type    { return UNSUBACK }
func (*Pingreq) Type() Type     { return PINGREQ }
func (*Pingresp) Type() Type    { return PINGRESP }
func (*Disconnect) Type() Type  { return DISCONNECT }
func (*Auth) Type() Type        { return AUTH }
