package mqtt

import (
	"io"
	"strconv"
)

// AppendVarint appends n as a Variable Byte Integer [MQTT-1.5.5], in the minimum number of bytes
// [MQTT-1.5.5-1]. n must lie in 0..MaxRemainingLength; a larger n takes more than four bytes,
// which every receiver rejects, and a negative n is encoded as its uint32 value.
func AppendVarint(dst []byte, n int) []byte {
	u := uint32(n)
	for u >= 0x80 {
		dst = append(dst, byte(u)|0x80)
		u >>= 7
	}
	return append(dst, byte(u))
}

// VarintSize is the number of bytes AppendVarint uses for n.
func VarintSize(n int) int {
	u := uint32(n)
	switch {
	case u < 1<<7:
		return 1
	case u < 1<<14:
		return 2
	case u < 1<<21:
		return 3
	case u < 1<<28:
		return 4
	}
	return 5
}

// consumeVarint decodes a Variable Byte Integer at the start of b. n > 0 is the number of bytes
// used; n == 0 means b ends inside the integer; n < 0 means it is malformed: a fifth byte
// [MQTT-1.5.5] or more bytes than the value needs [MQTT-1.5.5-1].
func consumeVarint(b []byte) (v, n int) {
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0
		}
		c := b[i]
		v |= int(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, -1 // non-minimal: a trailing zero group [MQTT-1.5.5-1]
			}
			return v, i + 1
		}
	}
	return 0, -1 // a continuation bit on the fourth byte
}

// checkFlags checks the low nibble of the first byte for packet type t [MQTT-2.1.3-1] (5.0),
// [MQTT-2.2.2-1] (3.1.1).
func checkFlags(t Type, flags byte) error {
	switch t {
	case 0:
		return malformed("packet type 0 is reserved [MQTT-2.1.3-1]")
	case PUBLISH:
		qos := flags >> 1 & 3
		if qos == 3 {
			return malformed("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
		}
		if qos == 0 && flags&0x08 != 0 {
			return malformed("PUBLISH with QoS 0 and DUP set [MQTT-3.3.1-2]")
		}
	case PUBREL:
		if flags != 0x02 {
			return malformed("PUBREL fixed header flags must be 0010 [MQTT-3.6.1-1]")
		}
	case SUBSCRIBE:
		if flags != 0x02 {
			return malformed("SUBSCRIBE fixed header flags must be 0010 [MQTT-3.8.1-1]")
		}
	case UNSUBSCRIBE:
		if flags != 0x02 {
			return malformed("UNSUBSCRIBE fixed header flags must be 0010 [MQTT-3.10.1-1]")
		}
	case DISCONNECT:
		if flags != 0 {
			return malformed("DISCONNECT fixed header flags must be 0 [MQTT-3.14.1-1]")
		}
	case AUTH:
		if flags != 0 {
			return malformed("AUTH fixed header flags must be 0 [MQTT-3.15.1-1]")
		}
	default:
		if t > AUTH {
			return malformed("packet type " + strconv.Itoa(int(t)) + " does not exist")
		}
		if flags != 0 {
			return malformed(t.String() + " fixed header flags must be 0 [MQTT-2.1.3-1]")
		}
	}
	return nil
}

func tooLarge(total, max int) error {
	return &Error{Code: PacketTooLarge, Msg: "packet of " + strconv.Itoa(total) +
		" bytes exceeds the maximum packet size of " + strconv.Itoa(max) + " [MQTT-3.2.2-15]"}
}

// ReadFixedHeader reads the first byte and the Remaining Length of a packet from r.
//
// It checks the flags for the packet type [MQTT-2.1.3-1], the encoding of the Remaining Length
// [MQTT-1.5.5-1], and, when maxPacketSize > 0, that the whole packet (fixed header included)
// fits in maxPacketSize, before the caller allocates anything for the body: a larger packet is a
// *Error with code Packet Too Large. io.EOF before the first byte is returned as is (the peer
// closed between packets); EOF inside the header is io.ErrUnexpectedEOF. Other read errors are
// returned unchanged. On an error after the first byte, the FixedHeader holds what was read.
func ReadFixedHeader(r io.ByteReader, maxPacketSize int) (FixedHeader, error) {
	b, err := r.ReadByte()
	if err != nil {
		return FixedHeader{}, err
	}
	fh := FixedHeader{Type: Type(b >> 4), Flags: b & 0x0F}
	if err := checkFlags(fh.Type, fh.Flags); err != nil {
		return fh, err
	}
	rem := 0
	for i := 0; ; i++ {
		if i == 4 {
			return fh, malformed("remaining length longer than four bytes [MQTT-1.5.5]")
		}
		c, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fh, err
		}
		rem |= int(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return fh, malformed("remaining length not in its shortest form [MQTT-1.5.5-1]")
			}
			fh.Remaining = rem
			if total := 1 + (i + 1) + rem; maxPacketSize > 0 && total > maxPacketSize {
				return fh, tooLarge(total, maxPacketSize)
			}
			return fh, nil
		}
	}
}

// parseFixedHeader is ReadFixedHeader over a byte slice; it returns the header's length, or
// ErrIncomplete when buf ends inside the header.
func parseFixedHeader(buf []byte, maxPacketSize int) (FixedHeader, int, error) {
	if len(buf) == 0 {
		return FixedHeader{}, 0, ErrIncomplete
	}
	fh := FixedHeader{Type: Type(buf[0] >> 4), Flags: buf[0] & 0x0F}
	if err := checkFlags(fh.Type, fh.Flags); err != nil {
		return fh, 0, err
	}
	rem, n := consumeVarint(buf[1:])
	switch {
	case n == 0:
		return fh, 0, ErrIncomplete
	case n < 0:
		return fh, 0, malformed("remaining length: invalid variable byte integer [MQTT-1.5.5-1]")
	}
	fh.Remaining = rem
	if total := 1 + n + rem; maxPacketSize > 0 && total > maxPacketSize {
		return fh, 0, tooLarge(total, maxPacketSize)
	}
	return fh, 1 + n, nil
}

// appendFixedHeader appends the first byte and the Remaining Length.
func appendFixedHeader(dst []byte, t Type, flags byte, remaining int) []byte {
	return AppendVarint(append(dst, byte(t)<<4|flags), remaining)
}

// packetSize is the encoded size of a packet whose Remaining Length is rem.
func packetSize(rem int) int { return 1 + VarintSize(rem) + rem }

func checkRemaining(t Type, rem int) error {
	if rem > MaxRemainingLength {
		return invalid("%s remaining length %d exceeds %d", t, rem, MaxRemainingLength)
	}
	return nil
}

// knownVersion reports whether v is a protocol level this package speaks.
func knownVersion(v Version) bool { return v == V31 || v == V311 || v == V5 }

func checkDecodeVersion(v Version) error {
	if knownVersion(v) {
		return nil
	}
	return protocolErr("protocol version " + strconv.Itoa(int(v)) +
		" unknown: the first packet must be CONNECT, or call SetVersion [MQTT-3.1.0-1]")
}

func checkEncodeVersion(t Type, v Version) error {
	if !knownVersion(v) {
		return invalid("%s: unknown protocol version %d", t, byte(v))
	}
	return nil
}
