package mqtt

// PropID is an MQTT 5.0 property identifier.
type PropID byte

// Property identifiers [MQTT-2.2.2].
const (
	PropPayloadFormat          PropID = 0x01 // byte
	PropMessageExpiry          PropID = 0x02 // four byte integer
	PropContentType            PropID = 0x03 // UTF-8 string
	PropResponseTopic          PropID = 0x08 // UTF-8 string
	PropCorrelationData        PropID = 0x09 // binary data
	PropSubscriptionID         PropID = 0x0B // variable byte integer
	PropSessionExpiry          PropID = 0x11 // four byte integer
	PropAssignedClientID       PropID = 0x12 // UTF-8 string
	PropServerKeepAlive        PropID = 0x13 // two byte integer
	PropAuthMethod             PropID = 0x15 // UTF-8 string
	PropAuthData               PropID = 0x16 // binary data
	PropRequestProblemInfo     PropID = 0x17 // byte
	PropWillDelay              PropID = 0x18 // four byte integer
	PropRequestResponseInfo    PropID = 0x19 // byte
	PropResponseInfo           PropID = 0x1A // UTF-8 string
	PropServerReference        PropID = 0x1C // UTF-8 string
	PropReasonString           PropID = 0x1F // UTF-8 string
	PropReceiveMaximum         PropID = 0x21 // two byte integer
	PropTopicAliasMaximum      PropID = 0x22 // two byte integer
	PropTopicAlias             PropID = 0x23 // two byte integer
	PropMaximumQoS             PropID = 0x24 // byte
	PropRetainAvailable        PropID = 0x25 // byte
	PropUserProperty           PropID = 0x26 // UTF-8 string pair
	PropMaximumPacketSize      PropID = 0x27 // four byte integer
	PropWildcardSubAvailable   PropID = 0x28 // byte
	PropSubIDAvailable         PropID = 0x29 // byte
	PropSharedSubAvailable     PropID = 0x2A // byte
	maxPropID                         = 0x2A
	willPropertiesPseudoPacket Type   = 0 // index of the Will Properties row in propertyAllowed
)

// PropSet is a bit set of property identifiers (bit n = identifier n).
type PropSet uint64

// Has reports whether id is in the set.
func (s PropSet) Has(id PropID) bool { return s&(1<<id) != 0 }

// UserProperty is one User Property name/value pair.
type UserProperty struct {
	Key   string
	Value string
}

// Properties are the MQTT 5.0 properties of one packet (or of a will). Present records which were
// on the wire, so a zero value and an absent property differ. Code that assigns a single-valued
// field must also call Set, or the field is not encoded. SubscriptionIDs and User are encoded
// whenever they are non-empty (their Present bits follow the slices).
//
// SubscriptionIDs and User may repeat; every other property may appear at most once (a repeat
// is a Protocol Error, as each property's section says: "It is a Protocol Error to include ...
// more than once").
type Properties struct {
	Present PropSet

	PayloadFormat        byte
	MessageExpiry        uint32
	ContentType          string
	ResponseTopic        string
	CorrelationData      []byte
	SubscriptionIDs      []uint32 // PUBLISH may carry several; SUBSCRIBE at most one
	SessionExpiry        uint32
	AssignedClientID     string
	ServerKeepAlive      uint16
	AuthMethod           string
	AuthData             []byte
	RequestProblemInfo   byte
	WillDelay            uint32
	RequestResponseInfo  byte
	ResponseInfo         string
	ServerReference      string
	ReasonString         string
	ReceiveMaximum       uint16
	TopicAliasMaximum    uint16
	TopicAlias           uint16
	MaximumQoS           byte
	RetainAvailable      byte
	User                 []UserProperty
	MaximumPacketSize    uint32
	WildcardSubAvailable byte
	SubIDAvailable       byte
	SharedSubAvailable   byte
}

// Has reports whether property id was present.
func (p *Properties) Has(id PropID) bool { return p.Present.Has(id) }

// Set marks property id present (after its field has been assigned).
func (p *Properties) Set(id PropID) { p.Present |= 1 << id }

// Clear marks property id absent and zeroes its field.
func (p *Properties) Clear(id PropID) {
	p.Present &^= 1 << id
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = 0
	case PropMessageExpiry:
		p.MessageExpiry = 0
	case PropContentType:
		p.ContentType = ""
	case PropResponseTopic:
		p.ResponseTopic = ""
	case PropCorrelationData:
		p.CorrelationData = nil
	case PropSubscriptionID:
		p.SubscriptionIDs = nil
	case PropSessionExpiry:
		p.SessionExpiry = 0
	case PropAssignedClientID:
		p.AssignedClientID = ""
	case PropServerKeepAlive:
		p.ServerKeepAlive = 0
	case PropAuthMethod:
		p.AuthMethod = ""
	case PropAuthData:
		p.AuthData = nil
	case PropRequestProblemInfo:
		p.RequestProblemInfo = 0
	case PropWillDelay:
		p.WillDelay = 0
	case PropRequestResponseInfo:
		p.RequestResponseInfo = 0
	case PropResponseInfo:
		p.ResponseInfo = ""
	case PropServerReference:
		p.ServerReference = ""
	case PropReasonString:
		p.ReasonString = ""
	case PropReceiveMaximum:
		p.ReceiveMaximum = 0
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = 0
	case PropTopicAlias:
		p.TopicAlias = 0
	case PropMaximumQoS:
		p.MaximumQoS = 0
	case PropRetainAvailable:
		p.RetainAvailable = 0
	case PropUserProperty:
		p.User = nil
	case PropMaximumPacketSize:
		p.MaximumPacketSize = 0
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable = 0
	case PropSubIDAvailable:
		p.SubIDAvailable = 0
	case PropSharedSubAvailable:
		p.SharedSubAvailable = 0
	}
}
