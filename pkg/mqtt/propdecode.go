package mqtt

import "strconv"

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
		id, err := p.readID(&blk, t)
		if err != nil {
			return err
		}
		switch id {
		case PropUserProperty:
			nUser++
		case PropSubscriptionID:
			nSub++
		}
		if err := p.readValue(&blk, id); err != nil {
			return err
		}
	}
	if nUser > 0 || nSub > 0 {
		p.collectLists(blk.b, nUser, nSub)
	}
	return p.check(t)
}

// readID reads one property identifier for packet type t and marks it present, rejecting
// an unknown identifier and a second copy of a non-repeatable property.
func (p *Properties) readID(blk *cursor, t Type) (PropID, error) {
	b := blk.b[blk.off]
	blk.off++
	// The identifier is a Variable Byte Integer, but every defined one is below 0x80, so a
	// byte with the continuation bit can only start an unknown identifier.
	if b > maxPropID || propTypes[b] == ptNone {
		return 0, malformed("unknown property identifier 0x" + strconv.FormatUint(uint64(b), 16) +
			" in " + packetName(t) + " (§2.2.2.2)")
	}
	id := PropID(b)
	if id != PropUserProperty && id != PropSubscriptionID && p.Present.Has(id) {
		return 0, protocolErr(propNames[id] + " included more than once in " + packetName(t))
	}
	p.Present |= 1 << id
	return id, nil
}

// readValue reads the value of property id into p. The repeatable ones (User Property,
// Subscription Identifier) are only checked here; collectLists stores them.
func (p *Properties) readValue(blk *cursor, id PropID) error {
	name := propNames[id]
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
	case PropMaximumPacketSize:
		p.MaximumPacketSize, err = blk.readUint32(name)
	case PropWildcardSubAvailable:
		p.WildcardSubAvailable, err = blk.readByte(name)
	case PropSubIDAvailable:
		p.SubIDAvailable, err = blk.readByte(name)
	case PropSharedSubAvailable:
		p.SharedSubAvailable, err = blk.readByte(name)
	}
	return err
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
