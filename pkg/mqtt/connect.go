package mqtt

import "strconv"

// Connect flag bits [MQTT-3.1.2.3].
const (
	connReserved     = 0x01
	connCleanStart   = 0x02
	connWill         = 0x04
	connWillQoSShift = 3
	connWillRetain   = 0x20
	connPassword     = 0x40
	connUsername     = 0x80
)

func protocolName(v Version) string {
	if v == V31 {
		return "MQIsdp"
	}
	return "MQTT"
}

// Decode parses a CONNECT body into p. The protocol version comes from the packet itself; v is
// ignored. Strings and byte slices alias body, which must not be modified while p is in use.
//
// On error p keeps what was decoded before it. In particular an unknown protocol level is a
// *Error with code Unsupported Protocol Version and p.ProtocolName and p.Version set, so the
// server can answer with a CONNACK in a form the client understands [MQTT-3.1.2-2].
func (p *Connect) Decode(flags byte, body []byte, _ Version) error {
	*p = Connect{}
	if err := checkFlags(CONNECT, flags); err != nil {
		return err
	}
	c := cursor{b: body}
	if err := p.decodeProtocol(&c); err != nil {
		return err
	}
	if err := p.decodeFlags(&c); err != nil {
		return err
	}
	var err error
	if p.KeepAlive, err = c.readUint16("CONNECT keep alive"); err != nil {
		return err
	}
	if p.Version == V5 {
		if err := p.Properties.decode(&c, CONNECT); err != nil {
			return err
		}
	}
	return p.decodePayload(&c)
}

// decodeProtocol reads the protocol name and level into p and checks that they name a
// protocol version this package speaks.
func (p *Connect) decodeProtocol(c *cursor) error {
	name, err := c.readString("CONNECT protocol name")
	if err != nil {
		return err
	}
	p.ProtocolName = name
	level, err := c.readByte("CONNECT protocol level")
	if err != nil {
		return err
	}
	p.Version = Version(level)
	switch {
	case name == "MQTT" && (p.Version == V311 || p.Version == V5), name == "MQIsdp" && p.Version == V31:
		return nil
	case name == "MQTT" || name == "MQIsdp":
		// [MQTT-3.1.2-2] (5.0, 3.1.1): the server answers 0x84, or 0x01 in 3.x, and closes.
		return &Error{Code: UnsupportedProtocolVersion,
			Msg: "protocol " + name + " level " + strconv.Itoa(int(level)) + " is not supported [MQTT-3.1.2-2]"}
	default:
		// [MQTT-3.1.2-1]: not a protocol this server speaks; it may close without a CONNACK.
		return protocolErr("protocol name " + strconv.Quote(name) + " is not MQTT [MQTT-3.1.2-1]")
	}
}

// decodeFlags reads the Connect Flags into p and checks their combinations.
func (p *Connect) decodeFlags(c *cursor) error {
	cf, err := c.readByte("CONNECT flags")
	if err != nil {
		return err
	}
	if cf&connReserved != 0 {
		return malformed("CONNECT reserved flag is set [MQTT-3.1.2-3]")
	}
	p.CleanStart = cf&connCleanStart != 0
	p.WillFlag = cf&connWill != 0
	p.WillQoS = cf >> connWillQoSShift & 3
	p.WillRetain = cf&connWillRetain != 0
	p.PasswordFlag = cf&connPassword != 0
	p.UsernameFlag = cf&connUsername != 0
	if !p.WillFlag {
		if p.WillQoS != 0 {
			return malformed("Will QoS without Will Flag [MQTT-3.1.2-11] (5.0), [MQTT-3.1.2-13] (3.1.1)")
		}
		if p.WillRetain {
			return malformed("Will Retain without Will Flag [MQTT-3.1.2-13] (5.0), [MQTT-3.1.2-15] (3.1.1)")
		}
	} else if p.WillQoS == 3 {
		return malformed("Will QoS 3 [MQTT-3.1.2-12] (5.0), [MQTT-3.1.2-14] (3.1.1)")
	}
	if p.Version == V311 && p.PasswordFlag && !p.UsernameFlag {
		// 5.0 allows a password without a user name; 3.1 servers ignored the combination.
		return malformed("Password Flag without User Name Flag [MQTT-3.1.2-22] (3.1.1)")
	}
	return nil
}

// decodePayload reads the payload fields the flags announce and checks that nothing
// follows them.
func (p *Connect) decodePayload(c *cursor) error {
	var err error
	// The payload fields come in this order when present [MQTT-3.1.3-1].
	if p.ClientID, err = c.readString("CONNECT client identifier"); err != nil { // [MQTT-3.1.3-3], [MQTT-3.1.3-4]
		return err
	}
	if p.WillFlag { // [MQTT-3.1.2-9]
		if err := p.decodeWill(c); err != nil {
			return err
		}
	}
	if p.UsernameFlag { // [MQTT-3.1.2-17]
		if p.Username, err = c.readString("CONNECT user name"); err != nil { // [MQTT-3.1.3-12]
			return err
		}
	}
	if p.PasswordFlag { // [MQTT-3.1.2-19]
		if p.Password, err = c.readBinary("CONNECT password"); err != nil {
			return err
		}
	}
	if c.rest() != 0 {
		// Absent flags mean absent fields [MQTT-3.1.2-16], [MQTT-3.1.2-18]: extra bytes are an error.
		return malformed("CONNECT has " + strconv.Itoa(c.rest()) + " bytes after its payload [MQTT-3.1.4-1]")
	}
	// Client identifier policy (length, characters, an empty one with Clean Session 0 in 3.1.1
	// [MQTT-3.1.3-8]) is the server's: it answers those with a CONNACK, not a closed connection.
	return nil
}

// decodeWill reads the will properties (5.0), topic and payload.
func (p *Connect) decodeWill(c *cursor) error {
	if p.Version == V5 {
		if err := p.WillProperties.decode(c, willPropertiesPseudoPacket); err != nil {
			return err
		}
	}
	topic, wildcard, err := c.readTopic("CONNECT will topic") // [MQTT-3.1.3-11]
	if err != nil {
		return err
	}
	if p.WillTopic = topic; topic == "" {
		return protocolErr("empty will topic [MQTT-4.7.3-1]")
	}
	if wildcard {
		return &Error{Code: TopicNameInvalid, Msg: "will topic contains a wildcard [MQTT-4.7.0-1]"}
	}
	if p.WillPayload, err = c.readBinary("CONNECT will payload"); err != nil {
		return err
	}
	return nil
}

// connectLengths checks p for version v and returns its Remaining Length and the lengths of its
// properties and will properties.
func (p *Connect) connectLengths(v Version) (rem, pl, wpl int, err error) {
	if err := checkEncodeVersion(CONNECT, v); err != nil {
		return 0, 0, 0, err
	}
	if p.WillQoS > 2 {
		return 0, 0, 0, invalid("CONNECT Will QoS %d", p.WillQoS)
	}
	if !p.WillFlag && (p.WillQoS != 0 || p.WillRetain) {
		return 0, 0, 0, invalid("CONNECT Will QoS or Will Retain without Will Flag")
	}
	if v == V311 && p.PasswordFlag && !p.UsernameFlag {
		return 0, 0, 0, invalid("CONNECT password without user name in 3.1.1")
	}
	rem = 2 + len(protocolName(v)) + 1 + 1 + 2
	if v == V5 {
		if pl, err = p.Properties.encodedLen(CONNECT); err != nil {
			return 0, 0, 0, err
		}
		rem += VarintSize(pl) + pl
	}
	if err := checkLen("CONNECT client identifier", len(p.ClientID)); err != nil {
		return 0, 0, 0, err
	}
	rem += 2 + len(p.ClientID)
	if p.WillFlag {
		if v == V5 {
			if wpl, err = p.WillProperties.encodedLen(willPropertiesPseudoPacket); err != nil {
				return 0, 0, 0, err
			}
			rem += VarintSize(wpl) + wpl
		}
		if err := checkLen("CONNECT will topic", len(p.WillTopic)); err != nil {
			return 0, 0, 0, err
		}
		if err := checkLen("CONNECT will payload", len(p.WillPayload)); err != nil {
			return 0, 0, 0, err
		}
		rem += 4 + len(p.WillTopic) + len(p.WillPayload)
	}
	if p.UsernameFlag {
		if err := checkLen("CONNECT user name", len(p.Username)); err != nil {
			return 0, 0, 0, err
		}
		rem += 2 + len(p.Username)
	}
	if p.PasswordFlag {
		if err := checkLen("CONNECT password", len(p.Password)); err != nil {
			return 0, 0, 0, err
		}
		rem += 2 + len(p.Password)
	}
	return rem, pl, wpl, checkRemaining(CONNECT, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Connect) Size(v Version) int {
	rem, _, _, err := p.connectLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. The protocol name and level written are those of v;
// p.ProtocolName and p.Version, which Decode fills, are not consulted. The flags are taken from
// WillFlag, UsernameFlag and PasswordFlag: a field whose flag is false is not written.
func (p *Connect) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, wpl, err := p.connectLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendFixedHeader(dst, CONNECT, 0, rem)
	dst = appendString(dst, protocolName(v))
	var cf byte
	if p.CleanStart {
		cf |= connCleanStart
	}
	if p.WillFlag {
		cf |= connWill | p.WillQoS<<connWillQoSShift
		if p.WillRetain {
			cf |= connWillRetain
		}
	}
	if p.PasswordFlag {
		cf |= connPassword
	}
	if p.UsernameFlag {
		cf |= connUsername
	}
	dst = append(dst, byte(v), cf)
	dst = appendUint16(dst, p.KeepAlive)
	if v == V5 {
		dst = p.Properties.appendTo(dst, pl)
	}
	dst = appendString(dst, p.ClientID)
	if p.WillFlag {
		if v == V5 {
			dst = p.WillProperties.appendTo(dst, wpl)
		}
		dst = appendString(dst, p.WillTopic)
		dst = appendBinary(dst, p.WillPayload)
	}
	if p.UsernameFlag {
		dst = appendString(dst, p.Username)
	}
	if p.PasswordFlag {
		dst = appendBinary(dst, p.Password)
	}
	return dst, nil
}

// Decode parses a CONNACK body for protocol version v into p. In 3.x, p.ReasonCode is the
// connect return code.
func (p *Connack) Decode(flags byte, body []byte, v Version) error {
	*p = Connack{}
	if err := checkFlags(CONNACK, flags); err != nil {
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	c := cursor{b: body}
	ack, err := c.readByte("CONNACK acknowledge flags")
	if err != nil {
		return err
	}
	rc, err := c.readByte("CONNACK reason code")
	if err != nil {
		return err
	}
	p.ReasonCode = ReasonCode(rc)
	if v != V31 { // 3.1 has no flags: the byte is unused
		if ack&0xFE != 0 {
			return malformed("CONNACK reserved acknowledge flags are set [MQTT-3.2.2-1]")
		}
		p.SessionPresent = ack&1 != 0
	}
	if !ValidReasonCode(CONNACK, v, p.ReasonCode) {
		return malformed("CONNACK " + p.ReasonCode.String() + " is not a connect reason code [MQTT-3.2.2-8]")
	}
	if p.SessionPresent && p.ReasonCode != Success {
		return protocolErr("CONNACK with Session Present and a non-zero reason code [MQTT-3.2.2-6] (5.0), [MQTT-3.2.2-4] (3.1.1)")
	}
	if v == V5 {
		if err := p.Properties.decode(&c, CONNACK); err != nil {
			return err
		}
	}
	if c.rest() != 0 {
		return malformed("CONNACK has " + strconv.Itoa(c.rest()) + " trailing bytes")
	}
	return nil
}

func (p *Connack) connackLengths(v Version) (rem, pl int, rc ReasonCode, err error) {
	if err := checkEncodeVersion(CONNACK, v); err != nil {
		return 0, 0, 0, err
	}
	rc = p.ReasonCode
	if v != V5 {
		var ok bool
		if rc, ok = V3ConnackCode(rc); !ok {
			return 0, 0, 0, invalid("CONNACK %s has no 3.x return code: close the connection instead [MQTT-3.2.2-6] (3.1.1)", p.ReasonCode)
		}
	} else if !ValidReasonCode(CONNACK, v, rc) {
		return 0, 0, 0, invalid("CONNACK %s is not a connect reason code [MQTT-3.2.2-8]", rc)
	}
	if p.SessionPresent && rc != Success {
		return 0, 0, 0, invalid("CONNACK with Session Present and %s [MQTT-3.2.2-6]", rc)
	}
	if v != V5 {
		return 2, 0, rc, nil
	}
	if pl, err = p.Properties.encodedLen(CONNACK); err != nil {
		return 0, 0, 0, err
	}
	rem = 2 + VarintSize(pl) + pl
	return rem, pl, rc, checkRemaining(CONNACK, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Connack) Size(v Version) int {
	rem, _, _, err := p.connackLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x a 5.0 reason code is translated with V3ConnackCode, and
// one with no 3.x equivalent is an error; in 3.1 Session Present is not sent.
func (p *Connack) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, rc, err := p.connackLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendFixedHeader(dst, CONNACK, 0, rem)
	var ack byte
	if p.SessionPresent && v != V31 {
		ack = 1
	}
	dst = append(dst, ack, byte(rc))
	if v == V5 {
		dst = p.Properties.appendTo(dst, pl)
	}
	return dst, nil
}
