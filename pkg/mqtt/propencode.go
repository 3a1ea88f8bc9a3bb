package mqtt

import "math/bits"

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
