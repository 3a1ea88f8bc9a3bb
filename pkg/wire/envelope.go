package wire

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// The envelope: how messages travel between replicas. Pure code, no I/O.
//
// A batch is one version byte followed by any number of messages, each framed by its length:
//
//	batch   = version:u8 (=1)  message*
//	message = length:uvarint  body[length]
//	body    = id[16]  hdr:u8  flags:uvarint  created:int64 LE  expiry:varint (zig-zag)
//	          origin:str  client:str  username:str  topic:str  payload:bin
//	          [payload format:u8]  [content type:str]  [response topic:str]  [correlation:bin]
//	          user-properties:uvarint (key:str value:str)*
//	          groups:uvarint group:str*
//	          (bytes after the groups are ignored: room for later fields)
//	str, bin = length:uvarint bytes
//	hdr     = bits 0-1 QoS, 2 retain, 3 plain, 4..7 payload format, content type, response topic,
//	          correlation data present
//
// Lengths are varints, so nothing is capped at 64 KiB and short fields cost one byte; no JSON,
// no base64. The frame length lets a decoder skip fields a newer sender appended, and lets the
// decoder count the messages (and so size its one allocation) before decoding any.

// EnvelopeVersion is the first byte of every batch this package writes.
const EnvelopeVersion = 1

// minBody is the smallest body a message can have: id, header, flags, created, expiry, five
// empty strings, two zero counts.
const minBody = 16 + 1 + 1 + 8 + 1 + 5 + 2

const (
	hdrQoS     = 0x03
	hdrRetain  = 0x04
	hdrPlain   = 0x08
	hdrPropsAt = 4 // PropMask bits sit at hdr bits 4..7
)

// ErrMalformed is wrapped by every error DecodeBatch returns.
var ErrMalformed = errors.New("bus: malformed envelope")

// ErrBadMessage is returned by AppendMessage for a message that cannot be encoded (QoS above 2).
var ErrBadMessage = errors.New("bus: message cannot be encoded")

// PropMask records which optional MQTT 5 properties a message carries, so that "absent" and
// "zero" stay different across the bus.
type PropMask uint8

// Bits of PropMask.
const (
	PropPayloadFormat   PropMask = 1 << iota // Payload Format Indicator
	PropContentType                          // Content Type
	PropResponseTopic                        // Response Topic
	PropCorrelationData                      // Correlation Data
)

// MessageID identifies a message across the cluster: a version 7 UUID (RFC 9562), so it prints
// as one and sorts by the millisecond the broker accepted the message.
type MessageID [16]byte

// The 74 bits a version 7 UUID leaves after its millisecond timestamp hold, in this order, a
// 42-bit counter that every id of the process advances (RFC 9562 section 6.2, method 1: a
// fixed-length dedicated counter, here seeded at random and never reset) and 32 random bits
// drawn once per process (section 6.4, a node id for distributed generation). Two ids of one
// process differ in their counter unless 2^42 ids were made in one millisecond; two processes
// collide only with the same millisecond, counter and node. Ids made together are alike in all
// but a few bytes, which is what lets an export entry of consecutive messages compress (random
// ids were the least compressible 16 of its about 31 bytes per message).
var (
	idCounter atomic.Uint64
	idNode    = rand.Uint32()
)

func init() { idCounter.Store(rand.Uint64()) }

// NewMessageID returns a new id stamped with the current time.
func NewMessageID() MessageID { return NewMessageIDAt(time.Now().UnixNano()) }

// NewMessageIDAt returns a new id stamped with unixNano, the time the message was accepted (the
// Created of the message it names): one atomic add, no lock, no system call.
func NewMessageIDAt(unixNano int64) MessageID {
	var id MessageID
	ms := uint64(unixNano / 1e6)
	c := idCounter.Add(1)
	binary.BigEndian.PutUint64(id[0:8], ms<<16) // bytes 0-5: the 48-bit millisecond
	id[6] = 0x70 | byte(c>>38)&0x0f             // version 7, counter bits 41-38
	id[7] = byte(c >> 30)
	id[8] = 0x80 | byte(c>>24)&0x3f // RFC 9562 variant, counter bits 29-24
	id[9] = byte(c >> 16)
	id[10] = byte(c >> 8)
	id[11] = byte(c)
	binary.BigEndian.PutUint32(id[12:], idNode)
	return id
}

// IsZero reports whether id is all zeros (no id).
func (id MessageID) IsZero() bool { return id == MessageID{} }

// String formats id as a UUID: 8-4-4-4-12 hex digits.
func (id MessageID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return string(b[:])
}

// Message is one MQTT application message as it travels between replicas.
//
// A decoded Message aliases the batch it came from: its strings and byte slices point into it.
// The bus hands every received batch over in a buffer of its own that it never reuses, so
// decoded messages may be kept as long as needed, but nobody may write into the batch.
type Message struct {
	ID       MessageID
	Origin   string // id of the replica the publisher is connected to
	ClientID string // publisher's client id
	Username string // publisher's user name ("" if none)
	Topic    string
	Payload  []byte // any bytes
	QoS      byte   // 0, 1 or 2
	Retain   bool
	Flags    uint32 // the broker's own flags; opaque to the bus
	Created  int64  // when the broker accepted the PUBLISH, Unix nanoseconds
	Expiry   int64  // absolute expiry (Message Expiry Interval added to Created), Unix ns; 0 = never

	// MQTT 5 properties that travel with the message. A property is present when its bit is set
	// in Props or, when encoding, when its field is not the zero value (CorrelationData: not nil).
	Props           PropMask
	PayloadFormat   byte
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	UserProperties  []mqtt.UserProperty // in the order the publisher sent them

	// Routing hints for the receiving replica. Plain: deliver to its non-shared subscribers
	// whose filters match. Groups: shared-subscription groups, as "group/filter", for which the
	// receiver must pick one of its local members.
	Plain  bool
	Groups []string
}

// props returns the properties that will be encoded.
func (m *Message) props() PropMask {
	p := m.Props
	if m.PayloadFormat != 0 {
		p |= PropPayloadFormat
	}
	if m.ContentType != "" {
		p |= PropContentType
	}
	if m.ResponseTopic != "" {
		p |= PropResponseTopic
	}
	if m.CorrelationData != nil {
		p |= PropCorrelationData
	}
	return p & 0x0f
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func strLen(n int) int { return uvarintLen(uint64(n)) + n }

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }

// bodySize is the encoded size of m without its length prefix.
func (m *Message) bodySize(p PropMask) int {
	n := 16 + 1 + uvarintLen(uint64(m.Flags)) + 8 + uvarintLen(zigzag(m.Expiry)) +
		strLen(len(m.Origin)) + strLen(len(m.ClientID)) + strLen(len(m.Username)) +
		strLen(len(m.Topic)) + strLen(len(m.Payload)) + m.propsSize(p)
	n += uvarintLen(uint64(len(m.Groups)))
	for _, g := range m.Groups {
		n += strLen(len(g))
	}
	return n
}

// Size returns how many bytes AppendMessage adds for m.
func (m *Message) Size() int {
	b := m.bodySize(m.props())
	return uvarintLen(uint64(b)) + b
}

// Encoded is a message's encoding worked out ahead (Message.Encoded), so that its size can be
// reserved before AppendEncoded writes it without working it out again.
type Encoded struct {
	props PropMask
	body  int
}

// Encoded works out m's encoding. m must not change until AppendEncoded has written it.
func (m *Message) Encoded() Encoded {
	p := m.props()
	return Encoded{props: p, body: m.bodySize(p)}
}

// Props is the property mask the encoding carries: Props plus the properties whose fields are
// set (what a decoded copy's Props is).
func (e Encoded) Props() PropMask { return e.props }

// Size returns how many bytes AppendEncoded adds.
func (e Encoded) Size() int { return uvarintLen(uint64(e.body)) + e.body }

// AppendEncoded appends m's framed encoding, worked out by m.Encoded, to dst, like AppendMessage;
// the caller has checked that m's QoS is at most 2.
func AppendEncoded(dst []byte, m *Message, e Encoded) []byte {
	return appendMessage(dst, m, e.props, e.body)
}

// AppendBatchHeader appends the version byte that starts every batch.
func AppendBatchHeader(dst []byte) []byte { return append(dst, EnvelopeVersion) }

// AppendMessage appends m's framed encoding to dst, which must already hold a batch header (or
// earlier messages after one). It allocates nothing when dst has room for m.Size() more bytes.
// It fails, leaving dst as it was, only for a QoS above 2.
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	if m.QoS > 2 {
		return dst, fmt.Errorf("%w: QoS %d", ErrBadMessage, m.QoS)
	}
	p := m.props()
	return appendMessage(dst, m, p, m.bodySize(p)), nil
}

// appendMessage is AppendMessage for a valid m whose property mask and body size are known.
func appendMessage(dst []byte, m *Message, p PropMask, body int) []byte {
	dst = growBytes(dst, uvarintLen(uint64(body))+body)
	dst = binary.AppendUvarint(dst, uint64(body))
	dst = append(dst, m.ID[:]...)
	hdr := m.QoS | byte(p)<<hdrPropsAt
	if m.Retain {
		hdr |= hdrRetain
	}
	if m.Plain {
		hdr |= hdrPlain
	}
	dst = append(dst, hdr)
	dst = binary.AppendUvarint(dst, uint64(m.Flags))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.Created))
	dst = binary.AppendVarint(dst, m.Expiry)
	dst = appendStr(dst, m.Origin)
	dst = appendStr(dst, m.ClientID)
	dst = appendStr(dst, m.Username)
	dst = appendStr(dst, m.Topic)
	dst = appendBin(dst, m.Payload)
	dst = m.appendProps(dst, p)
	dst = binary.AppendUvarint(dst, uint64(len(m.Groups)))
	for _, g := range m.Groups {
		dst = appendStr(dst, g)
	}
	return dst
}

// growBytes makes room for n more bytes with one allocation at most.
func growBytes(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), 2*cap(b)+n)
	copy(nb, b)
	return nb
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBin(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}
