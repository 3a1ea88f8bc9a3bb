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

// decode reads a property block (Property Length, then properties) for packet type t at the
// cursor. p must be zero. Strings and binary data alias the body.
//
// Allocation: none, except one exactly sized slice each for User Properties and Subscription
// Identifiers when the block has any. Counting them first costs a second pass over the block
// only in that case, and keeps allocation at most 32 bytes per 5 wire bytes (a User Property) or
// 4 bytes per 2 (a Subscription Identifier), whatever the input.
func (p *Properties) decode(c *cursor, t Type) error {
	n, err := c.readVarint("property length")
	if err != nil {
		return err
	}
	if n > c.rest() {
		return malformed(packetName(t) + " property length exceeds the packet")
	}
	blk := cursor{b: c.b[c.off : c.off+n : c.off+n]}
	c.off += n

	nUser, nSub := 0, 0
	for blk.rest() > 0 {
		b := blk.b[blk.off]
		blk.off++
		// The identifier is a Variable Byte Integer, but every defined one is below 0x80, so a
		// byte with the continuation bit can only start an unknown identifier.
		if b > maxPropID || propTypes[b] == ptNone {
			return malformed("unknown property identifier 0x" + strconv.FormatUint(uint64(b), 16) +
				" in " + packetName(t) + " (§2.2.2.2)")
		}
		id := PropID(b)
		name := propNames[id]
		if id != PropUserProperty && id != PropSubscriptionID && p.Present.Has(id) {
			return protocolErr(name + " included more than once in " + packetName(t))
		}
		p.Present |= 1 << id
		var err error
		switch id {
		case PropPayloadFormat:
			p.PayloadFormat, err = blk.readByte(name)
		case PropMessageExpiry:
			p.MessageExpiry, err = blk.readUint32(name)
		case PropContentType:
			p.ContentType, err = blk.readString(name) // [MQTT-3.3.2-19]
		case PropResponseTopic:
			p.ResponseTopic, err = blk.readString(name) // [MQTT-3.3.2-13]
		case PropCorrelationData:
			p.CorrelationData, err = blk.readBinary(name)
		case PropSubscriptionID:
			_, err = blk.readVarint(name)
			nSub++
		case PropSessionExpiry:
			p.SessionExpiry, err = blk.readUint32(name)
		case PropAssignedClientID:
			p.AssignedClientID, err = blk.readString(name)
		case PropServerKeepAlive:
			p.ServerKeepAlive, err = blk.readUint16(name)
		case PropAuthMethod:
			p.AuthMethod, err = blk.readString(name)
		case PropAuthData:
			p.AuthData, err = blk.readBinary(name)
		case PropRequestProblemInfo:
			p.RequestProblemInfo, err = blk.readByte(name)
		case PropWillDelay:
			p.WillDelay, err = blk.readUint32(name)
		case PropRequestResponseInfo:
			p.RequestResponseInfo, err = blk.readByte(name)
		case PropResponseInfo:
			p.ResponseInfo, err = blk.readString(name)
		case PropServerReference:
			p.ServerReference, err = blk.readString(name)
		case PropReasonString:
			p.ReasonString, err = blk.readString(name)
		case PropReceiveMaximum:
			p.ReceiveMaximum, err = blk.readUint16(name)
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum, err = blk.readUint16(name)
		case PropTopicAlias:
			p.TopicAlias, err = blk.readUint16(name)
		case PropMaximumQoS:
			p.MaximumQoS, err = blk.readByte(name)
		case PropRetainAvailable:
			p.RetainAvailable, err = blk.readByte(name)
		case PropUserProperty:
			if _, err = blk.readString("User Property name"); err == nil { // [MQTT-1.5.7-1]
				_, err = blk.readString("User Property value")
			}
			nUser++
		case PropMaximumPacketSize:
			p.MaximumPacketSize, err = blk.readUint32(name)
		case PropWildcardSubAvailable:
			p.WildcardSubAvailable, err = blk.readByte(name)
		case PropSubIDAvailable:
			p.SubIDAvailable, err = blk.readByte(name)
		case PropSharedSubAvailable:
			p.SharedSubAvailable, err = blk.readByte(name)
		}
		if err != nil {
			return err
		}
	}
	if nUser > 0 || nSub > 0 {
		p.collectLists(blk.b, nUser, nSub)
	}
	return p.check(t)
}

// collectLists is decode's second pass over a block it has already validated: it fills the
// repeatable properties into slices of exactly the counted length.
func (p *Properties) collectLists(blk []byte, nUser, nSub int) {
	if nUser > 0 {
		p.User = make([]UserProperty, 0, nUser)
	}
	if nSub > 0 {
		p.SubscriptionIDs = make([]uint32, 0, nSub)
	}
	c := cursor{b: blk}
	for c.rest() > 0 {
		id := PropID(c.b[c.off])
		c.off++
		switch propTypes[id] {
		case ptByte:
			c.off++
		case ptUint16:
			c.off += 2
		case ptUint32:
			c.off += 4
		case ptVarint:
			v, _ := c.readVarint("")
			p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(v))
		case ptString, ptBinary:
			_, _ = c.readBinary("")
		case ptPair:
			k, _ := c.readRawString("")
			v, _ := c.readRawString("")
			p.User = append(p.User, UserProperty{Key: k, Value: v})
		}
	}
}

// varField returns the value of a string or binary property as a string (without copying).
func (p *Properties) varField(id PropID) string {
	switch id {
	case PropContentType:
		return p.ContentType
	case PropResponseTopic:
		return p.ResponseTopic
	case PropCorrelationData:
		return aliasString(p.CorrelationData)
	case PropAssignedClientID:
		return p.AssignedClientID
	case PropAuthMethod:
		return p.AuthMethod
	case PropAuthData:
		return aliasString(p.AuthData)
	case PropResponseInfo:
		return p.ResponseInfo
	case PropServerReference:
		return p.ServerReference
	case PropReasonString:
		return p.ReasonString
	}
	return ""
}

// encodedLen checks p for packet type t and returns the length of its properties, without the
// Property Length prefix.
func (p *Properties) encodedLen(t Type) (int, error) {
	s := p.present()
	if s == 0 {
		return 0, nil
	}
	if err := p.check(t); err != nil {
		return 0, invalid("%s properties: %s", packetName(t), err.(*Error).Msg)
	}
	n := 0
	for rest := s; rest != 0; rest &= rest - 1 {
		id := PropID(bits.TrailingZeros64(uint64(rest)))
		switch propTypes[id] {
		case ptByte:
			n += 2
		case ptUint16:
			n += 3
		case ptUint32:
			n += 5
		case ptString, ptBinary:
			l := len(p.varField(id))
			if err := checkLen(propNames[id], l); err != nil {
				return 0, err
			}
			n += 3 + l
		case ptVarint:
			for _, v := range p.SubscriptionIDs {
				n += 1 + VarintSize(int(v))
			}
		case ptPair:
			for _, u := range p.User {
				if err := checkLen("User Property name", len(u.Key)); err != nil {
					return 0, err
				}
				if err := checkLen("User Property value", len(u.Value)); err != nil {
					return 0, err
				}
				n += 5 + len(u.Key) + len(u.Value)
			}
		}
	}
	if n > MaxRemainingLength {
		return 0, invalid("%s properties are %d bytes long", packetName(t), n)
	}
	return n, nil
}

// appendTo appends the Property Length n (from encodedLen) and the properties, in identifier
// order; User Properties keep their order [MQTT-3.3.2-18].
func (p *Properties) appendTo(dst []byte, n int) []byte {
	dst = AppendVarint(dst, n)
	if n == 0 {
		return dst
	}
	for rest := p.present(); rest != 0; rest &= rest - 1 {
		id := PropID(bits.TrailingZeros64(uint64(rest)))
		switch propTypes[id] {
		case ptByte:
			dst = append(dst, byte(id), p.byteValue(id))
		case ptUint16:
			var v uint16
			switch id {
			case PropServerKeepAlive:
				v = p.ServerKeepAlive
			case PropReceiveMaximum:
				v = p.ReceiveMaximum
			case PropTopicAliasMaximum:
				v = p.TopicAliasMaximum
			case PropTopicAlias:
				v = p.TopicAlias
			}
			dst = appendUint16(append(dst, byte(id)), v)
		case ptUint32:
			var v uint32
			switch id {
			case PropMessageExpiry:
				v = p.MessageExpiry
			case PropSessionExpiry:
				v = p.SessionExpiry
			case PropWillDelay:
				v = p.WillDelay
			case PropMaximumPacketSize:
				v = p.MaximumPacketSize
			}
			dst = appendUint32(append(dst, byte(id)), v)
		case ptString, ptBinary:
			dst = appendString(append(dst, byte(id)), p.varField(id))
		case ptVarint:
			for _, v := range p.SubscriptionIDs {
				dst = AppendVarint(append(dst, byte(id)), int(v))
			}
		case ptPair:
			for _, u := range p.User {
				dst = appendString(appendString(append(dst, byte(id)), u.Key), u.Value)
			}
		}
	}
	return dst
}
