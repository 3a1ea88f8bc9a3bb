package wire

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// Decoding envelope batches (the format is described in envelope.go).

// malformed builds a decoding error; offset is from the start of the batch.
func malformed(off int, what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrMalformed, what, off)
}

// DecodeBatch decodes every message of a batch. See DecodeBatchInto.
func DecodeBatch(batch []byte) ([]Message, error) { return DecodeBatchInto(nil, batch) }

// DecodeBatchInto appends the messages of batch to dst[:0] and returns the result.
//
// The messages alias batch (strings and byte slices point into it; nothing is copied), so batch
// must not be modified while they are in use.
//
// It never panics and checks every length against the bytes present before using it. It
// allocates at most: the message slice (when dst is too small), sized after counting frames,
// each at least 35 wire bytes for about 250 bytes of Message; and per message, exactly sized
// slices for user properties (at least 2 wire bytes per 32-byte element) and groups (at least 1
// per 16). So any input costs under 16 bytes of heap per byte.
//
// A malformed batch is rejected whole (ErrMalformed): it can only come from a bug or a foreign
// publisher, and half a batch would hide that.
func DecodeBatchInto(dst []Message, batch []byte) ([]Message, error) {
	dst = dst[:0]
	if err := checkVersion(batch, EnvelopeVersion, "unknown version"); err != nil {
		return dst, err
	}
	// First pass: frames only, to size the slice once.
	n := 0
	for off := 1; off < len(batch); {
		l, k := binary.Uvarint(batch[off:])
		if k <= 0 {
			return dst, malformed(off, "bad message length")
		}
		if l < minBody || l > uint64(len(batch)-off-k) {
			return dst, malformed(off, "message length out of range")
		}
		off += k + int(l)
		n++
	}
	if cap(dst) < n {
		dst = make([]Message, 0, n)
	}
	for off := 1; off < len(batch); {
		l, k := binary.Uvarint(batch[off:])
		off += k
		dst = dst[:len(dst)+1]
		m := &dst[len(dst)-1]
		if err := m.decodeBody(batch[off:off+int(l)], off); err != nil {
			return dst[:0], err
		}
		off += int(l)
	}
	return dst, nil
}

// checkVersion refuses an empty batch and one that does not start with version v (other names
// another version in the error).
func checkVersion(batch []byte, v byte, other string) error {
	if len(batch) == 0 {
		return malformed(0, "empty batch")
	}
	if batch[0] != v {
		return malformed(0, fmt.Sprintf("%s %d", other, batch[0]))
	}
	return nil
}

// decoder reads one message body; base is its offset in the batch, for error messages.
type decoder struct {
	b    []byte
	off  int
	base int
	err  error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = malformed(d.base+d.off, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b[d.off:])
	if k <= 0 {
		d.fail("bad varint: " + what)
		return 0
	}
	d.off += k
	return v
}

func (d *decoder) bytes(what string) []byte {
	l := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)-d.off) {
		d.fail(what + " longer than the message")
		return nil
	}
	b := d.b[d.off : d.off+int(l) : d.off+int(l)]
	d.off += int(l)
	return b
}

func (d *decoder) str(what string) string {
	b := d.bytes(what)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// decodeBody decodes one message body b (at least minBody bytes, as the batch's first pass
// checked), which starts at offset base of its batch.
func (m *Message) decodeBody(b []byte, base int) error {
	d := decoder{b: b, base: base}
	if err := m.decodeFixed(&d); err != nil {
		return err
	}
	m.Origin = d.str("origin")
	m.ClientID = d.str("client id")
	m.Username = d.str("username")
	m.Topic = d.str("topic")
	m.Payload = d.bytes("payload")
	m.decodeProps(&d)
	m.decodeLists(&d)
	return d.err
}

// decodeFixed reads the id, header, flags, created time and expiry. A QoS of 3 is returned at
// once; other errors are left in d.
func (m *Message) decodeFixed(d *decoder) error {
	b := d.b
	// len(b) >= minBody, checked by the first pass: the fixed part is present.
	copy(m.ID[:], b[:16])
	hdr := b[16]
	d.off = 17
	m.QoS = hdr & hdrQoS
	if m.QoS > 2 {
		return malformed(d.base+16, "QoS 3")
	}
	m.Retain = hdr&hdrRetain != 0
	m.Plain = hdr&hdrPlain != 0
	m.Props = PropMask(hdr >> hdrPropsAt)
	flags := d.uvarint("flags")
	if flags > 0xffffffff {
		d.fail("flags above 32 bits")
	}
	m.Flags = uint32(flags)
	if d.err == nil {
		if len(b)-d.off < 8 {
			d.fail("created time missing")
		} else {
			m.Created = int64(binary.LittleEndian.Uint64(b[d.off:]))
			d.off += 8
		}
	}
	if d.err == nil {
		v, k := binary.Varint(b[d.off:])
		if k <= 0 {
			d.fail("bad expiry")
		} else {
			m.Expiry = v
			d.off += k
		}
	}
	return nil
}

// decodeProps reads the optional MQTT 5 properties that m.Props says are present, and clears
// the others.
func (m *Message) decodeProps(d *decoder) {
	m.PayloadFormat, m.ContentType, m.ResponseTopic, m.CorrelationData = 0, "", "", nil
	if m.Props&PropPayloadFormat != 0 && d.err == nil {
		if d.off >= len(d.b) {
			d.fail("payload format missing")
		} else {
			m.PayloadFormat = d.b[d.off]
			d.off++
		}
	}
	if m.Props&PropContentType != 0 {
		m.ContentType = d.str("content type")
	}
	if m.Props&PropResponseTopic != 0 {
		m.ResponseTopic = d.str("response topic")
	}
	if m.Props&PropCorrelationData != 0 {
		m.CorrelationData = d.bytes("correlation data")
	}
}

// decodeLists reads the user properties and the groups, each slice allocated only after its
// count was checked against the bytes left.
func (m *Message) decodeLists(d *decoder) {
	m.decodeUserProps(d)
	m.Groups = nil
	if n := d.uvarint("group count"); n > 0 && d.err == nil {
		if n > uint64(len(d.b)-d.off) {
			d.fail("group count exceeds the message")
		} else {
			m.Groups = make([]string, n)
			for i := range m.Groups {
				m.Groups[i] = d.str("group")
			}
		}
	}
}

// decodeUserProps reads the user properties, their slice allocated only after their count was
// checked against the bytes left.
func (m *Message) decodeUserProps(d *decoder) {
	m.UserProperties = nil
	if n := d.uvarint("user property count"); n > 0 && d.err == nil {
		// Each pair takes at least two bytes: check before allocating.
		if n > uint64(len(d.b)-d.off)/2 {
			d.fail("user property count exceeds the message")
		} else {
			m.UserProperties = make([]mqtt.UserProperty, n)
			for i := range m.UserProperties {
				m.UserProperties[i].Key = d.str("user property key")
				m.UserProperties[i].Value = d.str("user property value")
			}
		}
	}
}
