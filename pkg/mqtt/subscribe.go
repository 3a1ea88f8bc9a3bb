package mqtt

import (
	"strconv"
	"unsafe"
)

// Subscription options bits (§3.8.3.1).
const (
	subQoSMask            = 0x03
	subNoLocal            = 0x04
	subRetainAsPublished  = 0x08
	subRetainHandlingMask = 0x30
	subRetainHandlingShft = 4
	subReservedV5         = 0xC0
	subReservedV3         = 0xFC
)

// countFilters counts the length-prefixed strings in b, each followed by `extra` bytes, before
// anything is allocated for them; b must hold nothing else.
func countFilters(t Type, b []byte, extra int) (int, error) {
	n := 0
	for i := 0; i < len(b); n++ {
		if len(b)-i < 2 {
			return 0, malformed(t.String() + " topic filter: packet ends early")
		}
		i += 2 + (int(b[i])<<8 | int(b[i+1])) + extra
		if i > len(b) {
			return 0, malformed(t.String() + " topic filter: length exceeds packet")
		}
	}
	return n, nil
}

// Decode parses a SUBSCRIBE body for protocol version v into p. Topic filters alias body and are
// not checked for wildcard placement: the server answers a bad filter with 0x8F in its SUBACK.
// Subscriptions is one exactly sized allocation (24 bytes per filter, and each filter takes at
// least 4 bytes on the wire).
func (p *Subscribe) Decode(flags byte, body []byte, v Version) error {
	*p = Subscribe{}
	if err := checkFlags(SUBSCRIBE, flags); err != nil { // [MQTT-3.8.1-1]
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	c := cursor{b: body}
	var err error
	if p.PacketID, err = c.readUint16("SUBSCRIBE packet identifier"); err != nil {
		return err
	}
	if p.PacketID == 0 {
		return protocolErr("SUBSCRIBE with packet identifier 0 [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-1] (3.1.1)")
	}
	if v == V5 {
		if err := p.Properties.decode(&c, SUBSCRIBE); err != nil {
			return err
		}
	}
	n, err := countFilters(SUBSCRIBE, body[c.off:], 1)
	if err != nil {
		return err
	}
	if n == 0 {
		return protocolErr("SUBSCRIBE without topic filters [MQTT-3.8.3-2] (5.0), [MQTT-3.8.3-3] (3.1.1)")
	}
	p.Subscriptions = make([]Subscription, n)
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		if s.Filter, err = c.readString("SUBSCRIBE topic filter"); err != nil { // [MQTT-3.8.3-1]
			return err
		}
		if s.Filter == "" {
			return protocolErr("SUBSCRIBE with an empty topic filter [MQTT-4.7.3-1]")
		}
		opts := c.b[c.off] // countFilters saw this byte
		c.off++
		s.QoS = opts & subQoSMask
		if v != V5 {
			if opts&subReservedV3 != 0 || s.QoS == 3 {
				return malformed("SUBSCRIBE requested QoS byte " + strconv.Itoa(int(opts)) + " [MQTT-3.8.3-4] (3.1.1)")
			}
			continue
		}
		if opts&subReservedV5 != 0 {
			return malformed("SUBSCRIBE reserved subscription option bits are set [MQTT-3.8.3-5]")
		}
		if s.QoS == 3 {
			return protocolErr("SUBSCRIBE Maximum QoS 3 (§3.8.3.1)")
		}
		s.NoLocal = opts&subNoLocal != 0
		s.RetainAsPublished = opts&subRetainAsPublished != 0
		s.RetainHandling = opts & subRetainHandlingMask >> subRetainHandlingShft
		if s.RetainHandling == 3 {
			return protocolErr("SUBSCRIBE Retain Handling 3 (§3.8.3.1)")
		}
	}
	return nil
}

func (p *Subscribe) subscribeLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(SUBSCRIBE, v); err != nil {
		return 0, 0, err
	}
	if p.PacketID == 0 {
		return 0, 0, invalid("SUBSCRIBE with packet identifier 0 [MQTT-2.2.1-3]")
	}
	if len(p.Subscriptions) == 0 {
		return 0, 0, invalid("SUBSCRIBE without topic filters [MQTT-3.8.3-2]")
	}
	rem = 2
	if v == V5 {
		if pl, err = p.Properties.encodedLen(SUBSCRIBE); err != nil {
			return 0, 0, err
		}
		rem += VarintSize(pl) + pl
	}
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		if s.Filter == "" {
			return 0, 0, invalid("SUBSCRIBE with an empty topic filter [MQTT-4.7.3-1]")
		}
		if err := checkLen("SUBSCRIBE topic filter", len(s.Filter)); err != nil {
			return 0, 0, err
		}
		if s.QoS > 2 {
			return 0, 0, invalid("SUBSCRIBE QoS %d", s.QoS)
		}
		if v == V5 && s.RetainHandling > 2 {
			return 0, 0, invalid("SUBSCRIBE Retain Handling %d", s.RetainHandling)
		}
		rem += 3 + len(s.Filter)
	}
	return rem, pl, checkRemaining(SUBSCRIBE, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Subscribe) Size(v Version) int {
	rem, _, err := p.subscribeLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x only each filter's QoS is sent; the 5.0 options and the
// properties are dropped.
func (p *Subscribe) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.subscribeLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, SUBSCRIBE, 0x02, rem), p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, pl)
	}
	for i := range p.Subscriptions {
		s := &p.Subscriptions[i]
		opts := s.QoS
		if v == V5 {
			if s.NoLocal {
				opts |= subNoLocal
			}
			if s.RetainAsPublished {
				opts |= subRetainAsPublished
			}
			opts |= s.RetainHandling << subRetainHandlingShft
		}
		dst = append(appendString(dst, s.Filter), opts)
	}
	return dst, nil
}

// aliasCodes returns b as reason codes without copying (ReasonCode is a byte).
func aliasCodes(b []byte) []ReasonCode {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*ReasonCode)(unsafe.Pointer(&b[0])), len(b))
}

func appendCodes(dst []byte, codes []ReasonCode) []byte {
	for _, rc := range codes {
		dst = append(dst, byte(rc))
	}
	return dst
}

// Decode parses a SUBACK body for protocol version v into p. ReasonCodes aliases body.
func (p *Suback) Decode(flags byte, body []byte, v Version) error {
	*p = Suback{}
	if err := checkFlags(SUBACK, flags); err != nil {
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	c := cursor{b: body}
	var err error
	if p.PacketID, err = c.readUint16("SUBACK packet identifier"); err != nil {
		return err
	}
	if v == V5 {
		if err := p.Properties.decode(&c, SUBACK); err != nil {
			return err
		}
	}
	if c.rest() == 0 {
		// One code per filter [MQTT-3.8.4-6], and a SUBSCRIBE has at least one.
		return protocolErr("SUBACK without reason codes [MQTT-3.8.4-6]")
	}
	codes := body[c.off:len(body):len(body)]
	for _, rc := range codes {
		if !ValidReasonCode(SUBACK, v, ReasonCode(rc)) {
			return malformed("SUBACK " + ReasonCode(rc).String() + " is not a subscribe reason code [MQTT-3.9.3-2]")
		}
	}
	p.ReasonCodes = aliasCodes(codes)
	return nil
}

func (p *Suback) subackLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(SUBACK, v); err != nil {
		return 0, 0, err
	}
	if len(p.ReasonCodes) == 0 {
		return 0, 0, invalid("SUBACK without reason codes [MQTT-3.8.4-6]")
	}
	for _, rc := range p.ReasonCodes {
		if v != V5 && rc.IsError() {
			continue // sent as 0x80
		}
		if !ValidReasonCode(SUBACK, v, rc) {
			return 0, 0, invalid("SUBACK %s is not a subscribe reason code [MQTT-3.9.3-2]", rc)
		}
	}
	rem = 2 + len(p.ReasonCodes)
	if v == V5 {
		if pl, err = p.Properties.encodedLen(SUBACK); err != nil {
			return 0, 0, err
		}
		rem += VarintSize(pl) + pl
	}
	return rem, pl, checkRemaining(SUBACK, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Suback) Size(v Version) int {
	rem, _, err := p.subackLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x every failure code (0x80 and above) is sent as 0x80, the
// only failure 3.1.1 knows.
func (p *Suback) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.subackLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, SUBACK, 0, rem), p.PacketID)
	if v == V5 {
		return appendCodes(p.Properties.appendTo(dst, pl), p.ReasonCodes), nil
	}
	for _, rc := range p.ReasonCodes {
		if rc.IsError() {
			rc = V3SubackFailure
		}
		dst = append(dst, byte(rc))
	}
	return dst, nil
}

// Decode parses an UNSUBSCRIBE body for protocol version v into p. Filters is one exactly sized
// allocation (16 bytes per filter, each at least 3 bytes on the wire); the strings alias body.
func (p *Unsubscribe) Decode(flags byte, body []byte, v Version) error {
	*p = Unsubscribe{}
	if err := checkFlags(UNSUBSCRIBE, flags); err != nil { // [MQTT-3.10.1-1]
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	c := cursor{b: body}
	var err error
	if p.PacketID, err = c.readUint16("UNSUBSCRIBE packet identifier"); err != nil {
		return err
	}
	if p.PacketID == 0 {
		return protocolErr("UNSUBSCRIBE with packet identifier 0 [MQTT-2.2.1-3] (5.0), [MQTT-2.3.1-1] (3.1.1)")
	}
	if v == V5 {
		if err := p.Properties.decode(&c, UNSUBSCRIBE); err != nil {
			return err
		}
	}
	n, err := countFilters(UNSUBSCRIBE, body[c.off:], 0)
	if err != nil {
		return err
	}
	if n == 0 {
		return protocolErr("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
	}
	p.Filters = make([]string, n)
	for i := range p.Filters {
		if p.Filters[i], err = c.readString("UNSUBSCRIBE topic filter"); err != nil { // [MQTT-3.10.3-1]
			return err
		}
		if p.Filters[i] == "" {
			return protocolErr("UNSUBSCRIBE with an empty topic filter [MQTT-4.7.3-1]")
		}
	}
	return nil
}

func (p *Unsubscribe) unsubscribeLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(UNSUBSCRIBE, v); err != nil {
		return 0, 0, err
	}
	if p.PacketID == 0 {
		return 0, 0, invalid("UNSUBSCRIBE with packet identifier 0 [MQTT-2.2.1-3]")
	}
	if len(p.Filters) == 0 {
		return 0, 0, invalid("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
	}
	rem = 2
	if v == V5 {
		if pl, err = p.Properties.encodedLen(UNSUBSCRIBE); err != nil {
			return 0, 0, err
		}
		rem += VarintSize(pl) + pl
	}
	for _, f := range p.Filters {
		if f == "" {
			return 0, 0, invalid("UNSUBSCRIBE with an empty topic filter [MQTT-4.7.3-1]")
		}
		if err := checkLen("UNSUBSCRIBE topic filter", len(f)); err != nil {
			return 0, 0, err
		}
		rem += 2 + len(f)
	}
	return rem, pl, checkRemaining(UNSUBSCRIBE, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Unsubscribe) Size(v Version) int {
	rem, _, err := p.unsubscribeLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x the properties are dropped.
func (p *Unsubscribe) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.unsubscribeLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, UNSUBSCRIBE, 0x02, rem), p.PacketID)
	if v == V5 {
		dst = p.Properties.appendTo(dst, pl)
	}
	for _, f := range p.Filters {
		dst = appendString(dst, f)
	}
	return dst, nil
}

// Decode parses an UNSUBACK body for protocol version v into p. In 3.x the packet is only a
// packet identifier; in 5.0 ReasonCodes aliases body.
func (p *Unsuback) Decode(flags byte, body []byte, v Version) error {
	*p = Unsuback{}
	if err := checkFlags(UNSUBACK, flags); err != nil {
		return err
	}
	if err := checkDecodeVersion(v); err != nil {
		return err
	}
	c := cursor{b: body}
	var err error
	if p.PacketID, err = c.readUint16("UNSUBACK packet identifier"); err != nil {
		return err
	}
	if v != V5 {
		if c.rest() != 0 {
			return malformed("UNSUBACK remaining length must be 2 in 3.x")
		}
		return nil
	}
	if err := p.Properties.decode(&c, UNSUBACK); err != nil {
		return err
	}
	if c.rest() == 0 {
		return protocolErr("UNSUBACK without reason codes (§3.11.3)")
	}
	codes := body[c.off:len(body):len(body)]
	for _, rc := range codes {
		if !ValidReasonCode(UNSUBACK, v, ReasonCode(rc)) {
			return malformed("UNSUBACK " + ReasonCode(rc).String() + " is not an unsubscribe reason code [MQTT-3.11.3-2]")
		}
	}
	p.ReasonCodes = aliasCodes(codes)
	return nil
}

func (p *Unsuback) unsubackLengths(v Version) (rem, pl int, err error) {
	if err := checkEncodeVersion(UNSUBACK, v); err != nil {
		return 0, 0, err
	}
	if v != V5 {
		return 2, 0, nil
	}
	if len(p.ReasonCodes) == 0 {
		return 0, 0, invalid("UNSUBACK without reason codes (§3.11.3)")
	}
	for _, rc := range p.ReasonCodes {
		if !ValidReasonCode(UNSUBACK, v, rc) {
			return 0, 0, invalid("UNSUBACK %s is not an unsubscribe reason code [MQTT-3.11.3-2]", rc)
		}
	}
	if pl, err = p.Properties.encodedLen(UNSUBACK); err != nil {
		return 0, 0, err
	}
	rem = 2 + VarintSize(pl) + pl + len(p.ReasonCodes)
	return rem, pl, checkRemaining(UNSUBACK, rem)
}

// Size implements Packet; it is -1 when p cannot be encoded in v.
func (p *Unsuback) Size(v Version) int {
	rem, _, err := p.unsubackLengths(v)
	if err != nil {
		return -1
	}
	return packetSize(rem)
}

// AppendTo implements Packet. In 3.x only the packet identifier is sent.
func (p *Unsuback) AppendTo(dst []byte, v Version) ([]byte, error) {
	rem, pl, err := p.unsubackLengths(v)
	if err != nil {
		return dst, err
	}
	dst = appendUint16(appendFixedHeader(dst, UNSUBACK, 0, rem), p.PacketID)
	if v == V5 {
		dst = appendCodes(p.Properties.appendTo(dst, pl), p.ReasonCodes)
	}
	return dst, nil
}
