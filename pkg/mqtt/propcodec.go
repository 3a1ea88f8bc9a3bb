package mqtt

import (
	"math/bits"
	"strconv"
)

// propType is the data type of a property value [MQTT-2.2.2.2].
type propType uint8

const (
	ptNone propType = iota
	ptByte
	ptUint16
	ptUint32
	ptVarint
	ptString
	ptBinary
	ptPair
)

var propTypes = [maxPropID + 1]propType{
	PropPayloadFormat:        ptByte,
	PropMessageExpiry:        ptUint32,
	PropContentType:          ptString,
	PropResponseTopic:        ptString,
	PropCorrelationData:      ptBinary,
	PropSubscriptionID:       ptVarint,
	PropSessionExpiry:        ptUint32,
	PropAssignedClientID:     ptString,
	PropServerKeepAlive:      ptUint16,
	PropAuthMethod:           ptString,
	PropAuthData:             ptBinary,
	PropRequestProblemInfo:   ptByte,
	PropWillDelay:            ptUint32,
	PropRequestResponseInfo:  ptByte,
	PropResponseInfo:         ptString,
	PropServerReference:      ptString,
	PropReasonString:         ptString,
	PropReceiveMaximum:       ptUint16,
	PropTopicAliasMaximum:    ptUint16,
	PropTopicAlias:           ptUint16,
	PropMaximumQoS:           ptByte,
	PropRetainAvailable:      ptByte,
	PropUserProperty:         ptPair,
	PropMaximumPacketSize:    ptUint32,
	PropWildcardSubAvailable: ptByte,
	PropSubIDAvailable:       ptByte,
	PropSharedSubAvailable:   ptByte,
}

var propNames = [maxPropID + 1]string{
	PropPayloadFormat:        "Payload Format Indicator",
	PropMessageExpiry:        "Message Expiry Interval",
	PropContentType:          "Content Type",
	PropResponseTopic:        "Response Topic",
	PropCorrelationData:      "Correlation Data",
	PropSubscriptionID:       "Subscription Identifier",
	PropSessionExpiry:        "Session Expiry Interval",
	PropAssignedClientID:     "Assigned Client Identifier",
	PropServerKeepAlive:      "Server Keep Alive",
	PropAuthMethod:           "Authentication Method",
	PropAuthData:             "Authentication Data",
	PropRequestProblemInfo:   "Request Problem Information",
	PropWillDelay:            "Will Delay Interval",
	PropRequestResponseInfo:  "Request Response Information",
	PropResponseInfo:         "Response Information",
	PropServerReference:      "Server Reference",
	PropReasonString:         "Reason String",
	PropReceiveMaximum:       "Receive Maximum",
	PropTopicAliasMaximum:    "Topic Alias Maximum",
	PropTopicAlias:           "Topic Alias",
	PropMaximumQoS:           "Maximum QoS",
	PropRetainAvailable:      "Retain Available",
	PropUserProperty:         "User Property",
	PropMaximumPacketSize:    "Maximum Packet Size",
	PropWildcardSubAvailable: "Wildcard Subscription Available",
	PropSubIDAvailable:       "Subscription Identifier Available",
	PropSharedSubAvailable:   "Shared Subscription Available",
}

func (id PropID) String() string {
	if id <= maxPropID && propNames[id] != "" {
		return propNames[id]
	}
	return "property 0x" + strconv.FormatUint(uint64(id), 16)
}

// knownProps holds every defined property identifier.
var knownProps = func() PropSet {
	var s PropSet
	for id, t := range propTypes {
		if t != ptNone {
			s |= 1 << id
		}
	}
	return s
}()

func props(ids ...PropID) PropSet {
	var s PropSet
	for _, id := range ids {
		s |= 1 << id
	}
	return s
}

// propertyAllowed says which properties each packet type may carry, indexed by Type, with the
// Will Properties of CONNECT in row willPropertiesPseudoPacket (table 2-4 of §2.2.2.2). A
// property outside its packet's row is a Malformed Packet (§2.2.2.2: "A Control Packet which
// contains an Identifier which is not valid for its packet type ... is a Malformed Packet").
var propertyAllowed = [AUTH + 1]PropSet{
	willPropertiesPseudoPacket: props(PropPayloadFormat, PropMessageExpiry, PropContentType,
		PropResponseTopic, PropCorrelationData, PropWillDelay, PropUserProperty),
	CONNECT: props(PropSessionExpiry, PropAuthMethod, PropAuthData, PropRequestProblemInfo,
		PropRequestResponseInfo, PropReceiveMaximum, PropTopicAliasMaximum, PropUserProperty,
		PropMaximumPacketSize),
	CONNACK: props(PropSessionExpiry, PropAssignedClientID, PropServerKeepAlive, PropAuthMethod,
		PropAuthData, PropResponseInfo, PropServerReference, PropReasonString, PropReceiveMaximum,
		PropTopicAliasMaximum, PropMaximumQoS, PropRetainAvailable, PropUserProperty,
		PropMaximumPacketSize, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable),
	PUBLISH: props(PropPayloadFormat, PropMessageExpiry, PropContentType, PropResponseTopic,
		PropCorrelationData, PropSubscriptionID, PropTopicAlias, PropUserProperty),
	PUBACK:      props(PropReasonString, PropUserProperty),
	PUBREC:      props(PropReasonString, PropUserProperty),
	PUBREL:      props(PropReasonString, PropUserProperty),
	PUBCOMP:     props(PropReasonString, PropUserProperty),
	SUBSCRIBE:   props(PropSubscriptionID, PropUserProperty),
	SUBACK:      props(PropReasonString, PropUserProperty),
	UNSUBSCRIBE: props(PropUserProperty),
	UNSUBACK:    props(PropReasonString, PropUserProperty),
	PINGREQ:     0,
	PINGRESP:    0,
	DISCONNECT:  props(PropSessionExpiry, PropServerReference, PropReasonString, PropUserProperty),
	AUTH:        props(PropAuthMethod, PropAuthData, PropReasonString, PropUserProperty),
}

// PropertyAllowed reports whether a packet of type t may carry property id. Pass
// willPropertiesPseudoPacket's value, 0, for the Will Properties of CONNECT.
func PropertyAllowed(t Type, id PropID) bool {
	return int(t) < len(propertyAllowed) && id <= maxPropID && propertyAllowed[t].Has(id)
}

func packetName(t Type) string {
	if t == willPropertiesPseudoPacket {
		return "Will Properties"
	}
	return t.String()
}

// present is Present with the bits of the repeatable properties derived from their slices: the
// encoder writes User and SubscriptionIDs whenever they are non-empty.
func (p *Properties) present() PropSet {
	s := p.Present &^ (1<<PropUserProperty | 1<<PropSubscriptionID)
	if len(p.User) > 0 {
		s |= 1 << PropUserProperty
	}
	if len(p.SubscriptionIDs) > 0 {
		s |= 1 << PropSubscriptionID
	}
	return s
}

// check validates which properties are present for packet type t and their values. It does not
// look at string contents (the decoder checked those as it read them). It is shared by decoding,
// encoding and Validate, so all three agree.
func (p *Properties) check(t Type) error {
	s := p.present()
	if s == 0 {
		return nil
	}
	if unknown := s &^ knownProps; unknown != 0 {
		return malformed("unknown " + PropID(bits.TrailingZeros64(uint64(unknown))).String())
	}
	if int(t) >= len(propertyAllowed) {
		return malformed("properties on unknown packet type " + strconv.Itoa(int(t)))
	}
	if bad := s &^ propertyAllowed[t]; bad != 0 {
		// §2.2.2.2: an identifier not valid for its packet type is a Malformed Packet.
		return malformed(PropID(bits.TrailingZeros64(uint64(bad))).String() +
			" is not valid in " + packetName(t) + " (§2.2.2.2)")
	}
	if s&rangeChecked == 0 {
		return nil
	}
	return p.checkRanges(s, t)
}

// zeroOrOne are the byte properties whose only values are 0 and 1 (§3.1.2.11.6, §3.1.2.11.7,
// §3.2.2.3.4, §3.2.2.3.5, §3.2.2.3.11 to §3.2.2.3.13; §3.3.2.3.2 lists the same two values).
var zeroOrOne = props(PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo,
	PropMaximumQoS, PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable,
	PropSharedSubAvailable)

// rangeChecked are the properties checkRanges looks at.
var rangeChecked = zeroOrOne | props(PropReceiveMaximum, PropMaximumPacketSize, PropTopicAlias,
	PropResponseTopic, PropSubscriptionID, PropAuthData)

func (p *Properties) byteValue(id PropID) byte {
	switch id {
	case PropPayloadFormat:
		return p.PayloadFormat
	case PropRequestProblemInfo:
		return p.RequestProblemInfo
	case PropRequestResponseInfo:
		return p.RequestResponseInfo
	case PropMaximumQoS:
		return p.MaximumQoS
	case PropRetainAvailable:
		return p.RetainAvailable
	case PropWildcardSubAvailable:
		return p.WildcardSubAvailable
	case PropSubIDAvailable:
		return p.SubIDAvailable
	case PropSharedSubAvailable:
		return p.SharedSubAvailable
	}
	return 0
}

func (p *Properties) checkRanges(s PropSet, t Type) error {
	for rest := s & zeroOrOne; rest != 0; rest &= rest - 1 {
		id := PropID(bits.TrailingZeros64(uint64(rest)))
		if v := p.byteValue(id); v > 1 {
			return protocolErr(id.String() + " must be 0 or 1, not " + strconv.Itoa(int(v)))
		}
	}
	if s.Has(PropReceiveMaximum) && p.ReceiveMaximum == 0 {
		return protocolErr("Receive Maximum of 0 (§3.1.2.11.3, §3.2.2.3.3)")
	}
	if s.Has(PropMaximumPacketSize) && p.MaximumPacketSize == 0 {
		return protocolErr("Maximum Packet Size of 0 (§3.1.2.11.4, §3.2.2.3.6)")
	}
	if s.Has(PropTopicAlias) && p.TopicAlias == 0 {
		return protocolErr("Topic Alias of 0 [MQTT-3.3.2-8]")
	}
	if s.Has(PropResponseTopic) && hasWildcard(p.ResponseTopic) {
		return protocolErr("Response Topic contains a wildcard [MQTT-3.3.2-14]")
	}
	for _, id := range p.SubscriptionIDs {
		if id == 0 {
			return protocolErr("Subscription Identifier of 0 (§3.3.2.3.8, §3.8.2.1.2)")
		}
		if id > MaxRemainingLength {
			return malformed("Subscription Identifier above 268,435,455")
		}
	}
	if t == SUBSCRIBE && len(p.SubscriptionIDs) > 1 {
		return protocolErr("Subscription Identifier more than once in SUBSCRIBE (§3.8.2.1.2)")
	}
	if t == CONNECT && s.Has(PropAuthData) && !s.Has(PropAuthMethod) {
		return protocolErr("Authentication Data without Authentication Method (§3.1.2.11.10)")
	}
	return nil
}

// Validate reports whether p may be sent in a packet of type t (willPropertiesPseudoPacket, 0,
// for Will Properties): every present property is allowed there (§2.2.2.2, else Malformed),
// values lie in their ranges (else Protocol Error), and strings are well-formed [MQTT-1.5.4-1],
// [MQTT-1.5.4-2] and fit their length prefix. The error is a *Error carrying the reason code a
// receiver would answer with.
func (p *Properties) Validate(t Type) error {
	if err := p.check(t); err != nil {
		return err
	}
	s := p.present()
	for _, f := range [...]struct {
		id PropID
		v  string
	}{
		{PropContentType, p.ContentType}, {PropResponseTopic, p.ResponseTopic},
		{PropAssignedClientID, p.AssignedClientID}, {PropAuthMethod, p.AuthMethod},
		{PropResponseInfo, p.ResponseInfo}, {PropServerReference, p.ServerReference},
		{PropReasonString, p.ReasonString},
	} {
		if s.Has(f.id) {
			if err := CheckString(f.v); err != nil {
				return malformed(f.id.String() + ": " + err.(*Error).Msg)
			}
		}
	}
	for _, u := range p.User {
		if err := CheckString(u.Key); err != nil {
			return malformed("User Property name: " + err.(*Error).Msg + " [MQTT-1.5.7-1]")
		}
		if err := CheckString(u.Value); err != nil {
			return malformed("User Property value: " + err.(*Error).Msg + " [MQTT-1.5.7-1]")
		}
	}
	if s.Has(PropCorrelationData) && len(p.CorrelationData) > MaxStringLength {
		return malformed("Correlation Data longer than 65,535 bytes")
	}
	if s.Has(PropAuthData) && len(p.AuthData) > MaxStringLength {
		return malformed("Authentication Data longer than 65,535 bytes")
	}
	return nil
}
