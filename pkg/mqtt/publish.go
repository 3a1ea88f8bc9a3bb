package mqtt

import "strconv"

// PUBLISH fixed header flags [MQTT-3.3.1].
const (
	pubRetain   = 0x01
	pubQoSShift = 1
	pubDup      = 0x08
)

// Decode parses a PUBLISH body with fixed header flags for protocol version v into p.
//
// It allocates nothing, unless the packet has User Properties or Subscription Identifiers (one
// exactly sized slice each): Topic, Payload and every property alias body, which therefore must
// not be modified or reused while p, or anything taken from it, is in use.
//
// On error p keeps what was decoded before it: a topic that is well-formed UTF-8 but contains a
// wildcard is a *Error with code Topic Name Invalid and p.PacketID set, so a v5 server can
// answer with a PUBACK or PUBREC carrying 0x90 instead of disconnecting.
func (p *Publish) Decode(flags byte, body []byte, v Version) error {
	*p = Publish{}
	if err := checkFlags(PUBLISH, flags); err != nil { // [MQTT-3.3.1-2], [MQTT-3.3.1-4]
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	p.Dup = flags&pubDup != 0
	p.QoS = flags >> pubQoSShift & 3
	p.Retain = flags&pubRetain != 0
	c := cursor{b: body}
	topic, wildcard, err := c.readTopic("PUBLISH topic name") // [MQTT-3.3.2-1]
	if err != nil {
		return err
	}
	p.Topic = topic
	if p.QoS > 0 {
		if p.PacketID, err = c.readUint16("PUBLISH packet identifier"); err != nil {
			return err
		}
		if p.PacketID == 0 {
			return protocolErr("PUBLISH with QoS > 0 and packet identifier 0 [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-1] (3.1.1)")
		}
	}
	if v == V5 {
		if err := p.Properties.decode(&c, PUBLISH); err != nil {
			return err
		}
	}
	if p.Topic == "" && !p.Properties.Has(PropTopicAlias) {
		// 5.0 §3.3.2.1: a zero length Topic Name without a Topic Alias is a Protocol Error;
		// 3.1.1 has no aliases, and every Topic Name is at least one character [MQTT-4.7.3-1].
		return protocolErr("PUBLISH with an empty topic name and no Topic Alias [MQTT-4.7.3-1]")
	}
	if wildcard {
		return &Error{Code: TopicNameInvalid, Msg: "PUBLISH topic name contains a wildcard [MQTT-3.3.2-2]"}
	}
	p.Payload = aliasBytes(body[c.off:])
	return nil
}

// publishLengths checks p for version v and returns its Remaining Length and properties length.
func (p *Publish) publishLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(PUBLISH, v); err != nil {
		return 0, 0, err
	}
	switch {
	case p.QoS > 2:
		return 0, 0, invalid("PUBLISH QoS %d [MQTT-3.3.1-4]", p.QoS)
	case p.QoS == 0 && p.Dup:
		return 0, 0, invalid("PUBLISH QoS 0 with DUP [MQTT-3.3.1-2]")
	case p.QoS > 0 && p.PacketID == 0:
		return 0, 0, invalid("PUBLISH QoS %d with packet identifier 0 [MQTT-2.2.1-3]", p.QoS)
	}
	if err := checkLen("PUBLISH topic name", len(p.Topic)); err != nil {
		return 0, 0, err
	}
	rem = 2 + len(p.Topic)
	if p.QoS > 0 {
		rem += 2
	}
	if v == V5 {
		if pl, err = p.Properties.encodedLen(PUBLISH); err != nil {
			return 0, 0, err
		}
		rem += VarintSize(pl) + pl
	}
	if p.Topic == "" && (v != V5 || !p.Properties.Has(PropTopicAlias)) {
		return 0, 0, invalid("PUBLISH with an empty topic name and no Topic Alias [MQTT-4.7.3-1]")
	}
	rem += len(p.Payload)
	return rem, pl, checkRemaining(PUBLISH, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Publish) Size(v Version) int {
	rem, _, err := p.publishLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x the properties are dropped. The PacketID of a QoS 0
// message is not sent [MQTT-2.2.1-2]. The Topic's contents are not re-checked: a topic that came
// from Decode is valid, and one built by the caller is the caller's to check.
func (p *Publish) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.publishLengths(v)
	if err != nil {
		return dst, err
	}
	return append(p.appendHeader(dst, v, rem, pl), p.Payload...), nil
}

// AppendHeader appends everything but the payload, so the payload can be written from its own
// buffer (net.Buffers{header, p.Payload}) without being copied. If p cannot be encoded in v
// (Size(v) < 0, AppendTo would fail) it returns dst unchanged; callers that build packets
// themselves should check Size first.
func (p *Publish) AppendHeader(dst []byte, v Version) []byte {
	rem, pl, err := p.publishLengths(v)
	if err != nil {
		return dst
	}
	return p.appendHeader(dst, v, rem, pl)
}

func (p *Publish) appendHeader(dst []byte, v Version, rem, pl int) []byte {
	flags := p.QoS << pubQoSShift
	if p.Dup {
		flags |= pubDup
	}
	if p.Retain {
		flags |= pubRetain
	}
	dst = appendFixedHeader(dst, PUBLISH, flags, rem)
	dst = appendString(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if v == V5 {
		dst = p.Properties.appendTo(dst, pl)
	}
	return dst
}

// decodeAck parses the body shared by PUBACK, PUBREC, PUBREL and PUBCOMP. In 5.0 the reason code
// may be left out when it is 0 with no properties, and the property length when there are no
// properties (§3.4.2.1, §3.4.2.2.1).
func decodeAck(t Type, flags byte, body []byte, v Version, id *uint16, rc *ReasonCode, props *Properties) error {
	if err := checkFlags(t, flags); err != nil {
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	if len(body) < 2 {
		return malformed(t.String() + " packet identifier: packet ends early")
	}
	*id = uint16(body[0])<<8 | uint16(body[1])
	c := cursor{b: body, off: 2}
	if v != V5 {
		if c.rest() != 0 {
			return malformed(t.String() + " remaining length must be 2 in 3.x")
		}
		return nil
	}
	if c.rest() == 0 {
		return nil
	}
	*rc = ReasonCode(body[2])
	c.off++
	if !ValidReasonCode(t, v, *rc) {
		return malformed(t.String() + " " + rc.String() + " is not one of its reason codes " + ackRCRule[t-PUBACK])
	}
	if c.rest() == 0 {
		return nil
	}
	if err := props.decode(&c, t); err != nil {
		return err
	}
	if c.rest() != 0 {
		return malformed(t.String() + " has " + strconv.Itoa(c.rest()) + " trailing bytes")
	}
	return nil
}

var ackRCRule = [...]string{"[MQTT-3.4.2-1]", "[MQTT-3.5.2-1]", "[MQTT-3.6.2-1]", "[MQTT-3.7.2-1]"}

// ackLengths returns the Remaining Length of an acknowledgement and the length of its properties.
func ackLengths(t Type, v Version, rc ReasonCode, props *Properties) (rem, pl int, err error) {
	if err := checkEncodeVersion(t, v); err != nil {
		return 0, 0, err
	}
	if v != V5 {
		return 2, 0, nil
	}
	if !ValidReasonCode(t, v, rc) {
		return 0, 0, invalid("%s %s is not one of its reason codes %s", t, rc, ackRCRule[t-PUBACK])
	}
	if pl, err = props.encodedLen(t); err != nil {
		return 0, 0, err
	}
	switch {
	case pl == 0 && rc == Success:
		return 2, 0, nil // the short form (§3.4.2.1)
	case pl == 0:
		return 3, 0, nil
	}
	rem = 3 + VarintSize(pl) + pl
	return rem, pl, checkRemaining(t, rem)
}

func ackSize(t Type, v Version, rc ReasonCode, props *Properties) int {
	rem, _, err := ackLengths(t, v, rc, props)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

func appendAck(dst []byte, t Type, v Version, id uint16, rc ReasonCode, props *Properties) ([]byte, error) {
	rem, pl, err := ackLengths(t, v, rc, props)
	if err != nil {
		return dst, err
	}
	var flags byte
	if t == PUBREL {
		flags = 0x02 // [MQTT-3.6.1-1]
	}
	dst = appendUint16(appendFixedHeader(dst, t, flags, rem), id)
	if rem > 2 {
		dst = append(dst, byte(rc))
	}
	if pl > 0 {
		dst = props.appendTo(dst, pl)
	}
	return dst, nil
}

// Decode parses a PUBACK body for protocol version v into p.
func (p *Puback) Decode(flags byte, body []byte, v Version) error {
	*p = Puback{}
	return decodeAck(PUBACK, flags, body, v, &p.PacketID, &p.ReasonCode, &p.Properties)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Puback) Size(v Version) int { return ackSize(PUBACK, v, p.ReasonCode, &p.Properties) }

// AppendTo implements Packet. In 3.x only the packet identifier is sent.
func (p *Puback) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBACK, v, p.PacketID, p.ReasonCode, &p.Properties)
}

// Decode parses a PUBREC body for protocol version v into p.
func (p *Pubrec) Decode(flags byte, body []byte, v Version) error {
	*p = Pubrec{}
	return decodeAck(PUBREC, flags, body, v, &p.PacketID, &p.ReasonCode, &p.Properties)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Pubrec) Size(v Version) int { return ackSize(PUBREC, v, p.ReasonCode, &p.Properties) }

// AppendTo implements Packet. In 3.x only the packet identifier is sent.
func (p *Pubrec) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBREC, v, p.PacketID, p.ReasonCode, &p.Properties)
}

// Decode parses a PUBREL body for protocol version v into p.
func (p *Pubrel) Decode(flags byte, body []byte, v Version) error {
	*p = Pubrel{}
	return decodeAck(PUBREL, flags, body, v, &p.PacketID, &p.ReasonCode, &p.Properties)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Pubrel) Size(v Version) int { return ackSize(PUBREL, v, p.ReasonCode, &p.Properties) }

// AppendTo implements Packet. In 3.x only the packet identifier is sent.
func (p *Pubrel) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBREL, v, p.PacketID, p.ReasonCode, &p.Properties)
}

// Decode parses a PUBCOMP body for protocol version v into p.
func (p *Pubcomp) Decode(flags byte, body []byte, v Version) error {
	*p = Pubcomp{}
	return decodeAck(PUBCOMP, flags, body, v, &p.PacketID, &p.ReasonCode, &p.Properties)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Pubcomp) Size(v Version) int { return ackSize(PUBCOMP, v, p.ReasonCode, &p.Properties) }

// AppendTo implements Packet. In 3.x only the packet identifier is sent.
func (p *Pubcomp) AppendTo(dst []byte, v Version) ([]byte, error) {
	return appendAck(dst, PUBCOMP, v, p.PacketID, p.ReasonCode, &p.Properties)
}
