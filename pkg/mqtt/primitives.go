package mqtt

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// MaxStringLength is the longest UTF-8 Encoded String or Binary Data field: a two byte length prefix.
const MaxStringLength = 65_535

// ErrInvalidPacket is wrapped by every error AppendTo returns: the packet's fields cannot be
// encoded (a string over 65,535 bytes, QoS 3, a property the packet type may not carry, AUTH in
// 3.x, ...). Decoding errors are *Error values instead.
var ErrInvalidPacket = errors.New("mqtt: packet cannot be encoded")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidPacket}, args...)...)
}

var (
	errStringUTF8 = &Error{Code: MalformedPacket, Msg: "string is not well-formed UTF-8 [MQTT-1.5.4-1]"}
	errStringNUL  = &Error{Code: MalformedPacket, Msg: "string contains U+0000 [MQTT-1.5.4-2]"}
	errStringLong = &Error{Code: MalformedPacket, Msg: "string longer than 65,535 bytes [MQTT-1.5.4]"}
)

// CheckString reports whether s may travel as an MQTT UTF-8 Encoded String: well-formed UTF-8
// without surrogate code points [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2], at most 65,535 bytes.
// Other control characters and non-characters are allowed: the spec only says a sender SHOULD
// NOT use them, and real clients do. The error is a *Error with code Malformed Packet.
func CheckString(s string) error {
	_, err := scanString(s)
	return err
}

// scanString is CheckString that also reports whether s holds a wildcard character, in one pass
// for the short strings topics usually are.
func scanString(s string) (wildcard bool, err error) {
	if len(s) > MaxStringLength {
		return false, errStringLong
	}
	if len(s) > 64 {
		// Long strings: let the vectorised searches do the work.
		// utf8.ValidString rejects the encodings of U+D800..U+DFFF (ED A0..BF xx), overlong
		// forms and code points above U+10FFFF: exactly RFC 3629's "well-formed".
		if !utf8.ValidString(s) {
			return false, errStringUTF8
		}
		if strings.IndexByte(s, 0) >= 0 {
			return false, errStringNUL
		}
		return hasWildcard(s), nil
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			return false, errStringNUL
		case c == '+' || c == '#':
			wildcard = true
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(s) {
		return false, errStringUTF8
	}
	return wildcard, nil
}

// CheckStringBytes is CheckString for a byte slice, without copying it.
func CheckStringBytes(b []byte) error { return CheckString(aliasString(b)) }

// aliasString returns a string sharing b's memory. b must not change while the string lives.
func aliasString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// aliasBytes returns b, or nil when it is empty, so decoded packets never hold empty non-nil
// slices (absent and empty compare equal, and tests can use reflect.DeepEqual).
func aliasBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// hasWildcard reports whether a topic name contains a wildcard character [MQTT-4.7.0-1].
func hasWildcard(s string) bool {
	return strings.IndexByte(s, '+') >= 0 || strings.IndexByte(s, '#') >= 0
}

// cursor walks a packet body. Every read checks the bytes left first, so no length from the wire
// is trusted before it has been compared with what is really there.
type cursor struct {
	b   []byte
	off int
}

func (c *cursor) rest() int { return len(c.b) - c.off }

func truncated(what string) error { return malformed(what + ": packet ends early") }

func (c *cursor) readByte(what string) (byte, error) {
	if c.rest() < 1 {
		return 0, truncated(what)
	}
	v := c.b[c.off]
	c.off++
	return v, nil
}

func (c *cursor) readUint16(what string) (uint16, error) {
	if c.rest() < 2 {
		return 0, truncated(what)
	}
	v := uint16(c.b[c.off])<<8 | uint16(c.b[c.off+1])
	c.off += 2
	return v, nil
}

func (c *cursor) readUint32(what string) (uint32, error) {
	if c.rest() < 4 {
		return 0, truncated(what)
	}
	b := c.b[c.off : c.off+4]
	c.off += 4
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), nil
}

func (c *cursor) readVarint(what string) (int, error) {
	v, n := consumeVarint(c.b[c.off:])
	switch {
	case n == 0:
		return 0, truncated(what)
	case n < 0:
		return 0, malformed(what + ": invalid variable byte integer [MQTT-1.5.5-1]")
	}
	c.off += n
	return v, nil
}

// readBinary reads Binary Data (two byte length, then bytes), aliasing the body.
func (c *cursor) readBinary(what string) ([]byte, error) {
	n, err := c.readUint16(what)
	if err != nil {
		return nil, err
	}
	if c.rest() < int(n) {
		return nil, malformed(what + ": length exceeds packet")
	}
	b := c.b[c.off : c.off+int(n) : c.off+int(n)]
	c.off += int(n)
	return aliasBytes(b), nil
}

// readRawString reads a UTF-8 Encoded String without checking its contents.
func (c *cursor) readRawString(what string) (string, error) {
	b, err := c.readBinary(what)
	return aliasString(b), err
}

// readString reads a UTF-8 Encoded String, aliasing the body, and checks it [MQTT-1.5.4-1],
// [MQTT-1.5.4-2].
func (c *cursor) readString(what string) (string, error) {
	s, err := c.readRawString(what)
	if err != nil {
		return "", err
	}
	if _, err := scanString(s); err != nil {
		return "", malformed(what + ": " + err.(*Error).Msg)
	}
	return s, nil
}

// readTopic reads a UTF-8 Encoded String and reports whether it holds a wildcard.
func (c *cursor) readTopic(what string) (s string, wildcard bool, err error) {
	if s, err = c.readRawString(what); err != nil {
		return "", false, err
	}
	if wildcard, err = scanString(s); err != nil {
		return "", false, malformed(what + ": " + err.(*Error).Msg)
	}
	return s, wildcard, nil
}

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendString appends a length-prefixed string; the caller has checked len(s) <= 65,535.
func appendString(dst []byte, s string) []byte {
	return append(appendUint16(dst, uint16(len(s))), s...)
}

func appendBinary(dst []byte, b []byte) []byte {
	return append(appendUint16(dst, uint16(len(b))), b...)
}

// checkLen is the encoder's check that a string or binary field fits its two byte length prefix.
func checkLen(what string, n int) error {
	if n > MaxStringLength {
		return invalid("%s is %d bytes, more than 65,535", what, n)
	}
	return nil
}
