// Package wire owns the load generator's bytes on the wire: the handful of MQTT 3.1.1
// and 5.0 packets it sends and receives, and the RESP commands and replies of its Redis
// mode.
//
// It is written independently of the project's codec in pkg/mqtt on purpose: the tool
// measures that codec's broker, so a bug there must not be able to hide here too. It
// is pure (bytes in, bytes out) apart from ReadPacket, which reads from a bufio.Reader.
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Protocol levels as carried in CONNECT.
const (
	V311 byte = 4
	V5   byte = 5
)

// Packet types: the high nibble of the fixed header's first byte.
const (
	CONNECT    byte = 1
	CONNACK    byte = 2
	PUBLISH    byte = 3
	PUBACK     byte = 4
	PUBREC     byte = 5
	PUBREL     byte = 6
	PUBCOMP    byte = 7
	SUBSCRIBE  byte = 8
	SUBACK     byte = 9
	PINGREQ    byte = 12
	PINGRESP   byte = 13
	DISCONNECT byte = 14
)

// MaxRemainingLength is the largest value the four-byte variable integer can hold.
const MaxRemainingLength = 268435455

// Errors returned by the decoders. They are wrapped with the packet's name.
var (
	// ErrMalformed means a packet ended early or had an impossible length.
	ErrMalformed = errors.New("malformed packet")
	// ErrTooLarge means a packet's remaining length is over the reader's limit.
	ErrTooLarge = errors.New("packet too large")
)

// AppendVarint appends n as an MQTT variable byte integer. n must be in
// [0, MaxRemainingLength].
func AppendVarint(dst []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if n == 0 {
			return dst
		}
	}
}

// varintLen is the number of bytes AppendVarint writes for n.
func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	default:
		return 4
	}
}

// Varint decodes a variable byte integer from the start of b and returns it with
// the number of bytes it used.
func Varint(b []byte) (n, used int, err error) {
	mul := 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, ErrMalformed
		}
		n += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		mul <<= 7
	}
	return 0, 0, fmt.Errorf("%w: variable integer longer than 4 bytes", ErrMalformed)
}

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

// Connect is what the tool puts in a CONNECT packet. There is no will, username or
// password; the only CONNECT property is a v5 session expiry (v5 defaults apply otherwise:
// receive maximum 65535).
type Connect struct {
	Version       byte // V311 or V5
	ClientID      string
	KeepAlive     uint16 // seconds
	CleanStart    bool
	SessionExpiry uint32 // v5 only; 0: none (the session ends with the connection)
}

// AppendConnect appends a CONNECT packet.
func AppendConnect(dst []byte, c Connect) []byte {
	rl := 2 + 4 + 1 + 1 + 2 + 2 + len(c.ClientID) // "MQTT", level, flags, keepalive, id
	if c.Version == V5 {
		rl++ // property length
		if c.SessionExpiry > 0 {
			rl += 5 // 0x11 and four bytes
		}
	}
	dst = append(dst, CONNECT<<4)
	dst = AppendVarint(dst, rl)
	dst = appendString(dst, "MQTT")
	var flags byte
	if c.CleanStart {
		flags |= 0x02
	}
	dst = append(dst, c.Version, flags, byte(c.KeepAlive>>8), byte(c.KeepAlive))
	if c.Version == V5 {
		if c.SessionExpiry > 0 {
			e := c.SessionExpiry
			dst = append(dst, 5, 0x11, byte(e>>24), byte(e>>16), byte(e>>8), byte(e))
		} else {
			dst = append(dst, 0)
		}
	}
	return appendString(dst, c.ClientID)
}

// AppendSubscribe appends a SUBSCRIBE for one topic filter at qos.
func AppendSubscribe(dst []byte, version byte, packetID uint16, filter string, qos byte) []byte {
	rl := 2 + 2 + len(filter) + 1
	if version == V5 {
		rl++
	}
	dst = append(dst, SUBSCRIBE<<4|0x02) // [MQTT-3.8.1-1] reserved bits 0010
	dst = AppendVarint(dst, rl)
	dst = append(dst, byte(packetID>>8), byte(packetID))
	if version == V5 {
		dst = append(dst, 0)
	}
	dst = appendString(dst, filter)
	return append(dst, qos&3) // v5 options: no-local, retain-as-published, retain handling all 0
}

// AppendPublish appends a PUBLISH. packetID is ignored at QoS 0.
func AppendPublish(dst []byte, version byte, qos byte, dup bool, topic string, packetID uint16, payload []byte) []byte {
	rl := 2 + len(topic) + len(payload)
	if qos > 0 {
		rl += 2
	}
	if version == V5 {
		rl++
	}
	h := PUBLISH<<4 | (qos&3)<<1
	if dup {
		h |= 0x08
	}
	dst = append(dst, h)
	dst = AppendVarint(dst, rl)
	dst = appendString(dst, topic)
	if qos > 0 {
		dst = append(dst, byte(packetID>>8), byte(packetID))
	}
	if version == V5 {
		dst = append(dst, 0)
	}
	return append(dst, payload...)
}

// PublishSize is the encoded length of the PUBLISH AppendPublish would write.
func PublishSize(version, qos byte, topic string, payloadLen int) int {
	rl := 2 + len(topic) + payloadLen
	if qos > 0 {
		rl += 2
	}
	if version == V5 {
		rl++
	}
	return 1 + varintLen(rl) + rl
}

// AppendAck appends PUBACK, PUBREC, PUBREL or PUBCOMP for packetID with success. The
// two-byte form is valid in both versions: v5 omits reason code 0x00 and properties
// when the remaining length is 2 [MQTT-3.4.2.1].
func AppendAck(dst []byte, typ byte, packetID uint16) []byte {
	h := typ << 4
	if typ == PUBREL {
		h |= 0x02 // [MQTT-3.6.1-1]
	}
	return append(dst, h, 2, byte(packetID>>8), byte(packetID))
}

// AppendPingreq appends a PINGREQ.
func AppendPingreq(dst []byte) []byte { return append(dst, PINGREQ<<4, 0) }

// AppendDisconnect appends a DISCONNECT (v5: reason 0x00 normal disconnection, in its
// short form).
func AppendDisconnect(dst []byte) []byte { return append(dst, DISCONNECT<<4, 0) }

// ReadPacket reads one packet from r and returns its first header byte and its body
// (everything after the remaining length). A body that fits in r's buffer aliases it
// and is valid only until the next read from r; a larger one is read into *scratch.
// Packets with a remaining length over maxSize fail with ErrTooLarge before anything
// is allocated.
func ReadPacket(r *bufio.Reader, scratch *[]byte, maxSize int) (hdr byte, body []byte, err error) {
	hdr, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	rl, mul := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, nil, fmt.Errorf("%w: remaining length longer than 4 bytes", ErrMalformed)
		}
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, noEOF(err)
		}
		rl += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		mul <<= 7
	}
	if rl > maxSize {
		return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, rl, maxSize)
	}
	if rl == 0 {
		return hdr, nil, nil
	}
	if rl <= r.Size() {
		body, err = r.Peek(rl)
		if err != nil {
			return 0, nil, noEOF(err)
		}
		_, _ = r.Discard(rl)
		return hdr, body, nil
	}
	if cap(*scratch) < rl {
		*scratch = make([]byte, rl)
	}
	body = (*scratch)[:rl]
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, noEOF(err)
	}
	return hdr, body, nil
}

// noEOF turns an EOF in the middle of a packet into io.ErrUnexpectedEOF, so callers can
// tell a clean close between packets from a truncated packet.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Connack is a decoded CONNACK.
type Connack struct {
	SessionPresent bool
	// Code is the v3.1.1 return code or the v5 reason code; 0 means accepted.
	Code byte
	// ReceiveMaximum is the server's v5 Receive Maximum: how many QoS>0 PUBLISHes the
	// client may have unacknowledged. 65535 when absent or v3.1.1.
	ReceiveMaximum uint16
	// MaximumQoS is the server's v5 Maximum QoS; 2 when absent or v3.1.1.
	MaximumQoS byte
}

// ParseConnack decodes a CONNACK body.
func ParseConnack(body []byte, version byte) (Connack, error) {
	c := Connack{ReceiveMaximum: 65535, MaximumQoS: 2}
	if len(body) < 2 {
		return c, fmt.Errorf("connack: %w: %d bytes", ErrMalformed, len(body))
	}
	c.SessionPresent = body[0]&1 == 1
	c.Code = body[1]
	if version != V5 || len(body) == 2 {
		return c, nil
	}
	props, _, err := splitProperties(body[2:])
	if err != nil {
		return c, fmt.Errorf("connack: %w", err)
	}
	err = walkProperties(props, func(id byte, v []byte) {
		switch id {
		case 0x21: // Receive Maximum
			c.ReceiveMaximum = uint16(v[0])<<8 | uint16(v[1])
		case 0x24: // Maximum QoS
			c.MaximumQoS = v[0]
		}
	})
	if err != nil {
		return c, fmt.Errorf("connack: %w", err)
	}
	return c, nil
}

// ParseSuback decodes a SUBACK body into its packet identifier and return/reason codes.
func ParseSuback(body []byte, version byte) (packetID uint16, codes []byte, err error) {
	if len(body) < 3 {
		return 0, nil, fmt.Errorf("suback: %w: %d bytes", ErrMalformed, len(body))
	}
	packetID = uint16(body[0])<<8 | uint16(body[1])
	rest := body[2:]
	if version == V5 {
		if _, rest, err = splitProperties(rest); err != nil {
			return 0, nil, fmt.Errorf("suback: %w", err)
		}
		if len(rest) == 0 {
			return 0, nil, fmt.Errorf("suback: %w: no reason codes", ErrMalformed)
		}
	}
	return packetID, rest, nil
}

// Publish is a decoded PUBLISH; Topic and Payload alias the body.
type Publish struct {
	QoS      byte
	Dup      bool
	Retain   bool
	Topic    []byte
	PacketID uint16
	Payload  []byte
}

// ParsePublish decodes a PUBLISH from its header byte and body.
func ParsePublish(hdr byte, body []byte, version byte) (Publish, error) {
	p := Publish{QoS: hdr >> 1 & 3, Dup: hdr&0x08 != 0, Retain: hdr&1 != 0}
	if p.QoS == 3 {
		return p, fmt.Errorf("publish: %w: QoS 3", ErrMalformed) // [MQTT-3.3.1-4]
	}
	if len(body) < 2 {
		return p, fmt.Errorf("publish: %w: no topic", ErrMalformed)
	}
	tl := int(body[0])<<8 | int(body[1])
	off := 2 + tl
	if off > len(body) {
		return p, fmt.Errorf("publish: %w: topic length %d over body %d", ErrMalformed, tl, len(body))
	}
	p.Topic = body[2:off]
	if p.QoS > 0 {
		if off+2 > len(body) {
			return p, fmt.Errorf("publish: %w: no packet identifier", ErrMalformed)
		}
		p.PacketID = uint16(body[off])<<8 | uint16(body[off+1])
		off += 2
	}
	rest := body[off:]
	if version == V5 {
		var err error
		if _, rest, err = splitProperties(rest); err != nil {
			return p, fmt.Errorf("publish: %w", err)
		}
	}
	p.Payload = rest
	return p, nil
}

// ParseAck decodes the body of PUBACK, PUBREC, PUBREL or PUBCOMP. reason is 0 when the
// v5 reason code is omitted, and always 0 in v3.1.1.
func ParseAck(body []byte) (packetID uint16, reason byte, err error) {
	if len(body) < 2 {
		return 0, 0, fmt.Errorf("ack: %w: %d bytes", ErrMalformed, len(body))
	}
	packetID = uint16(body[0])<<8 | uint16(body[1])
	if len(body) > 2 {
		reason = body[2]
	}
	return packetID, reason, nil
}

// DisconnectReason is the v5 reason code of a DISCONNECT body (0 when omitted).
func DisconnectReason(body []byte) byte {
	if len(body) == 0 {
		return 0
	}
	return body[0]
}

// splitProperties splits b into a v5 property block and what follows it.
func splitProperties(b []byte) (props, rest []byte, err error) {
	n, used, err := Varint(b)
	if err != nil {
		return nil, nil, fmt.Errorf("property length: %w", err)
	}
	if used+n > len(b) {
		return nil, nil, fmt.Errorf("%w: property length %d over %d bytes", ErrMalformed, n, len(b)-used)
	}
	return b[used : used+n], b[used+n:], nil
}

// walkProperties calls fn with each property's identifier and value bytes. It knows the
// size of every v5 property so it can skip the ones it does not care about.
func walkProperties(p []byte, fn func(id byte, v []byte)) error {
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		var n int
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A: // byte
			n = 1
		case 0x13, 0x21, 0x22, 0x23: // two-byte integer
			n = 2
		case 0x02, 0x11, 0x18, 0x27: // four-byte integer
			n = 4
		case 0x0B: // variable byte integer
			_, used, err := Varint(p)
			if err != nil {
				return err
			}
			n = used
		case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F: // string or binary
			if len(p) < 2 {
				return fmt.Errorf("%w: property %#x", ErrMalformed, id)
			}
			n = 2 + (int(p[0])<<8 | int(p[1]))
		case 0x26: // user property: string pair
			if len(p) < 2 {
				return fmt.Errorf("%w: property %#x", ErrMalformed, id)
			}
			k := 2 + (int(p[0])<<8 | int(p[1]))
			if len(p) < k+2 {
				return fmt.Errorf("%w: property %#x", ErrMalformed, id)
			}
			n = k + 2 + (int(p[k])<<8 | int(p[k+1]))
		default:
			return fmt.Errorf("%w: unknown property %#x", ErrMalformed, id)
		}
		if n > len(p) {
			return fmt.Errorf("%w: property %#x truncated", ErrMalformed, id)
		}
		fn(id, p[:n])
		p = p[n:]
	}
	return nil
}
