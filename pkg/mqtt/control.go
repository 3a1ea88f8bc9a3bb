package mqtt

import "strconv"

// Decode parses a PINGREQ body, which must be empty.
func (p *Pingreq) Decode(flags byte, body []byte, _ Version) error {
	return decodeEmpty(PINGREQ, flags, body)
}

// Size implements Packet.
func (p *Pingreq) Size(Version) int { return 2 }

// AppendTo implements Packet.
func (p *Pingreq) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkEncodeVersion(PINGREQ, v); err != nil {
		return dst, err
	}
	return append(dst, byte(PINGREQ)<<4, 0), nil
}

// Decode parses a PINGRESP body, which must be empty.
func (p *Pingresp) Decode(flags byte, body []byte, _ Version) error {
	return decodeEmpty(PINGRESP, flags, body)
}

// Size implements Packet.
func (p *Pingresp) Size(Version) int { return 2 }

// AppendTo implements Packet.
func (p *Pingresp) AppendTo(dst []byte, v Version) ([]byte, error) {
	if err := checkEncodeVersion(PINGRESP, v); err != nil {
		return dst, err
	}
	return append(dst, byte(PINGRESP)<<4, 0), nil
}

func decodeEmpty(t Type, flags byte, body []byte) error {
	if err := checkFlags(t, flags); err != nil {
		return err
	}
	if len(body) != 0 {
		return malformed(t.String() + " remaining length must be 0, not " + strconv.Itoa(len(body)))
	}
	return nil
}

// decodeReasonAndProps parses the body shared by DISCONNECT and AUTH in 5.0: nothing at all
// means reason code 0 and no properties, and a lone reason code means no properties
// (§3.14.2.2.1; AUTH is read the same way, leniently).
func decodeReasonAndProps(t Type, body []byte, rc *ReasonCode, props *Properties, rule string) error {
	if len(body) == 0 {
		return nil
	}
	*rc = ReasonCode(body[0])
	if !ValidReasonCode(t, V5, *rc) {
		return malformed(t.String() + " " + rc.String() + " is not one of its reason codes " + rule)
	}
	c := cursor{b: body, off: 1}
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

// Decode parses a DISCONNECT body for protocol version v into p. In 3.x the body must be empty.
func (p *Disconnect) Decode(flags byte, body []byte, v Version) error {
	*p = Disconnect{}
	if err := checkFlags(DISCONNECT, flags); err != nil { // [MQTT-3.14.1-1]
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	if v != V5 {
		return decodeEmpty(DISCONNECT, flags, body)
	}
	return decodeReasonAndProps(DISCONNECT, body, &p.ReasonCode, &p.Properties, "[MQTT-3.14.2-1]")
}

func (p *Disconnect) disconnectLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(DISCONNECT, v); err != nil {
		return 0, 0, err
	}
	if v != V5 {
		return 0, 0, nil
	}
	if !ValidReasonCode(DISCONNECT, v, p.ReasonCode) {
		return 0, 0, invalid("DISCONNECT %s is not a disconnect reason code [MQTT-3.14.2-1]", p.ReasonCode)
	}
	if pl, err = p.Properties.encodedLen(DISCONNECT); err != nil {
		return 0, 0, err
	}
	switch {
	case pl == 0 && p.ReasonCode == Success:
		return 0, 0, nil // §3.14.2.1: remaining length 0
	case pl == 0:
		return 1, 0, nil // §3.14.2.2.1: property length omitted
	}
	rem = 1 + VarintSize(pl) + pl
	return rem, pl, checkRemaining(DISCONNECT, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Disconnect) Size(v Version) int {
	rem, _, err := p.disconnectLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x the reason code and properties are dropped.
func (p *Disconnect) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.disconnectLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendFixedHeader(dst, DISCONNECT, 0, rem)
	if rem > 0 {
		dst = append(dst, byte(p.ReasonCode))
	}
	if pl > 0 {
		dst = p.Properties.appendTo(dst, pl)
	}
	return dst, nil
}

// Decode parses an AUTH body into p. AUTH exists in 5.0 only: in 3.x, type 15 is reserved and
// the packet is malformed.
func (p *Auth) Decode(flags byte, body []byte, v Version) error {
	*p = Auth{}
	if err := checkFlags(AUTH, flags); err != nil { // [MQTT-3.15.1-1]
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	if v != V5 {
		return malformed("AUTH (packet type 15) is reserved before MQTT 5.0 [MQTT-2.2.2-1] (3.1.1)")
	}
	return decodeReasonAndProps(AUTH, body, &p.ReasonCode, &p.Properties, "[MQTT-3.15.2-1]")
}

func (p *Auth) authLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(AUTH, v); err != nil {
		return 0, 0, err
	}
	if v != V5 {
		return 0, 0, invalid("AUTH does not exist in MQTT %s", v)
	}
	if !ValidReasonCode(AUTH, v, p.ReasonCode) {
		return 0, 0, invalid("AUTH %s is not an authenticate reason code [MQTT-3.15.2-1]", p.ReasonCode)
	}
	if pl, err = p.Properties.encodedLen(AUTH); err != nil {
		return 0, 0, err
	}
	if pl == 0 && p.ReasonCode == Success {
		return 0, 0, nil // §3.15.2.1: remaining length 0
	}
	rem = 1 + VarintSize(pl) + pl
	return rem, pl, checkRemaining(AUTH, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Auth) Size(v Version) int {
	rem, _, err := p.authLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. Encoding AUTH for 3.x is an error.
func (p *Auth) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.authLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendFixedHeader(dst, AUTH, 0, rem)
	if rem > 0 {
		dst = p.Properties.appendTo(append(dst, byte(p.ReasonCode)), pl)
	}
	return dst, nil
}
