package wire

import (
	"encoding/binary"
	"fmt"
)

// The export batch: how a broker's messages travel to the BigQuery adapter (the export stream).
// It carries what the adapter writes (no routing hints, no broker flags) and states the
// publisher once per run of its messages instead of once per message:
//
//	batch     = version:u8 (=2)  frame*
//	frame     = length:uvarint  body[length]
//	body      = publisher | message
//	publisher = 0:u8  origin:str  client:str  username:str  id[16]  created:int64 LE
//	message   = 1:u8  hdr:u8  ms:zvarint  seq:zvarint  node:zvarint  created:zvarint
//	            [expiry:zvarint]  topic:str  payload:bin
//	            [payload format:u8]  [content type:str]  [response topic:str]  [correlation:bin]
//	            user-properties:uvarint (key:str value:str)*
//	hdr       = bits 0-1 QoS, 2 retain, 3 expiry present, 4..7 properties present (as in the
//	            envelope)
//	zvarint   = zig-zag varint
//
// A message belongs to the publisher frame before it (its origin, client id and user name), and
// its id and created time are differences from the message before it, or for the first message
// after a publisher frame from the frame's id and time: ms is the difference of the ids' first 6
// bytes (the millisecond of a version 7 id), seq of bytes 6 to 11, node of bytes 12 to 15, each
// modulo its width; created is the difference in nanoseconds, expiry the difference from the
// message's own created time. Consecutive messages of a connection share the millisecond, their
// ids differ by a few counter steps and their times by microseconds, so a message's id and time
// take about 4 bytes instead of 24, before compression and, since they are what compresses least,
// after it (an S1 entry stores 11 instead of 20 bytes per message). A writer that splits a batch
// between entries starts the second part with a publisher frame whose id and time are those of
// the message before the split (AdvanceExportBase).
// Bytes after a frame's last field are ignored (room for later fields).

// ExportVersion is the first byte of an export batch (AppendExportBatchHeader).
const ExportVersion = 2

// Frame kinds of an export batch.
const (
	exportFramePublisher = 0
	exportFrameMessage   = 1
)

// minExportMessage is the smallest body of a message frame: kind, header, four differences,
// empty topic and payload, no user properties.
const minExportMessage = 1 + 1 + 4 + 1 + 1 + 1

// hdrExpiry marks a message frame that carries an expiry (the envelope's plain bit).
const hdrExpiry = hdrPlain

// ExportBase is what a publisher frame states: the fields its messages share, and the id and
// created time the first one's are differences from (its own, usually). While a batch is
// encoded or decoded, ID and Created are those of the last message.
type ExportBase struct {
	Origin   string
	ClientID string
	Username string
	ID       MessageID
	Created  int64
}

// SetFrom makes b the base for m and the messages after it of the same publisher.
func (b *ExportBase) SetFrom(m *Message) {
	*b = ExportBase{Origin: m.Origin, ClientID: m.ClientID, Username: m.Username, ID: m.ID, Created: m.Created}
}

// Fits reports whether m can follow b's publisher frame: same origin, client id and user name.
func (b *ExportBase) Fits(m *Message) bool {
	return b.ClientID == m.ClientID && b.Origin == m.Origin && b.Username == m.Username
}

// AppendExportBatchHeader appends the version byte that starts every export batch.
func AppendExportBatchHeader(dst []byte) []byte { return append(dst, ExportVersion) }

// AppendExportBase appends b's publisher frame.
func AppendExportBase(dst []byte, b *ExportBase) []byte {
	body := 1 + strLen(len(b.Origin)) + strLen(len(b.ClientID)) + strLen(len(b.Username)) + 16 + 8
	dst = growBytes(dst, uvarintLen(uint64(body))+body)
	dst = binary.AppendUvarint(dst, uint64(body))
	dst = append(dst, exportFramePublisher)
	dst = appendStr(dst, b.Origin)
	dst = appendStr(dst, b.ClientID)
	dst = appendStr(dst, b.Username)
	dst = append(dst, b.ID[:]...)
	return binary.LittleEndian.AppendUint64(dst, uint64(b.Created))
}

// idParts splits an id into the three parts a message frame encodes as differences.
func idParts(id *MessageID) (ms, seq uint64, node uint32) {
	hi, lo := binary.BigEndian.Uint64(id[0:8]), binary.BigEndian.Uint64(id[8:16])
	return hi >> 16, (hi&0xffff)<<32 | lo>>32, uint32(lo)
}

// idFromParts is the inverse of idParts; ms and seq are taken modulo 2^48.
func idFromParts(ms, seq uint64, node uint32) (id MessageID) {
	binary.BigEndian.PutUint64(id[0:8], ms<<16|(seq>>32)&0xffff)
	binary.BigEndian.PutUint64(id[8:16], seq<<32|uint64(node))
	return id
}

// diff48 is a-b modulo 2^48 as a signed number of 48 bits.
func diff48(a, b uint64) int64 { return int64((a-b)<<16) >> 16 }

// AppendExportMessage appends m's message frame, after b's publisher frame (or earlier messages
// after it): m's origin, client id and user name are b's (Fits), and its id and created time are
// written as differences from b's, which then become m's. Routing hints and flags (Plain,
// Groups, Flags) are not exported. It fails, leaving dst and b as they were, only for a QoS
// above 2.
func AppendExportMessage(dst []byte, b *ExportBase, m *Message) ([]byte, error) {
	if m.QoS > 2 {
		return dst, fmt.Errorf("%w: QoS %d", ErrBadMessage, m.QoS)
	}
	p := m.props()
	bms, bseq, bnode := idParts(&b.ID)
	ms, seq, node := idParts(&m.ID)
	dms, dseq := zigzag(diff48(ms, bms)), zigzag(diff48(seq, bseq))
	dnode, dcreated := zigzag(int64(int32(node-bnode))), zigzag(m.Created-b.Created)
	hdr := m.QoS | byte(p)<<hdrPropsAt
	if m.Retain {
		hdr |= hdrRetain
	}
	var dexp uint64
	if m.Expiry != 0 {
		hdr |= hdrExpiry
		dexp = zigzag(m.Expiry - m.Created)
	}
	body := 2 + uvarintLen(dms) + uvarintLen(dseq) + uvarintLen(dnode) + uvarintLen(dcreated) +
		strLen(len(m.Topic)) + strLen(len(m.Payload)) + m.propsSize(p)
	if hdr&hdrExpiry != 0 {
		body += uvarintLen(dexp)
	}
	dst = growBytes(dst, uvarintLen(uint64(body))+body)
	dst = binary.AppendUvarint(dst, uint64(body))
	dst = append(dst, exportFrameMessage, hdr)
	dst = binary.AppendUvarint(dst, dms)
	dst = binary.AppendUvarint(dst, dseq)
	dst = binary.AppendUvarint(dst, dnode)
	dst = binary.AppendUvarint(dst, dcreated)
	if hdr&hdrExpiry != 0 {
		dst = binary.AppendUvarint(dst, dexp)
	}
	dst = appendStr(dst, m.Topic)
	dst = appendBin(dst, m.Payload)
	b.ID, b.Created = m.ID, m.Created
	return m.appendProps(dst, p), nil
}

// propsSize is the encoded size of the optional properties p and the user properties.
func (m *Message) propsSize(p PropMask) int {
	n := 0
	if p&PropPayloadFormat != 0 {
		n++
	}
	if p&PropContentType != 0 {
		n += strLen(len(m.ContentType))
	}
	if p&PropResponseTopic != 0 {
		n += strLen(len(m.ResponseTopic))
	}
	if p&PropCorrelationData != 0 {
		n += strLen(len(m.CorrelationData))
	}
	n += uvarintLen(uint64(len(m.UserProperties)))
	for i := range m.UserProperties {
		n += strLen(len(m.UserProperties[i].Key)) + strLen(len(m.UserProperties[i].Value))
	}
	return n
}

// appendProps appends the optional properties p and the user properties.
func (m *Message) appendProps(dst []byte, p PropMask) []byte {
	if p&PropPayloadFormat != 0 {
		dst = append(dst, m.PayloadFormat)
	}
	if p&PropContentType != 0 {
		dst = appendStr(dst, m.ContentType)
	}
	if p&PropResponseTopic != 0 {
		dst = appendStr(dst, m.ResponseTopic)
	}
	if p&PropCorrelationData != 0 {
		dst = appendBin(dst, m.CorrelationData)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.UserProperties)))
	for i := range m.UserProperties {
		dst = appendStr(dst, m.UserProperties[i].Key)
		dst = appendStr(dst, m.UserProperties[i].Value)
	}
	return dst
}

// ExportFrame returns the size of the frame at the start of frames (its length prefix included)
// and whether it is a publisher frame; ok is false when no whole frame is there.
func ExportFrame(frames []byte) (size int, publisher, ok bool) {
	body, size, ok := exportFrameAt(frames)
	if !ok {
		return 0, false, false
	}
	return size, body[0] == exportFramePublisher, true
}

// exportFrameAt splits off the frame at the start of frames: its body (never empty) and its size
// with the length prefix; ok is false when no whole frame is there.
func exportFrameAt(frames []byte) (body []byte, size int, ok bool) {
	l, k := binary.Uvarint(frames)
	if k <= 0 || l == 0 || l > uint64(len(frames)-k) {
		return nil, 0, false
	}
	size = k + int(l)
	return frames[k:size:size], size, true
}

// AdvanceExportBase appends to dst the publisher frame that continues a batch after frames: pub
// is the publisher frame before them and frames are message frames that followed it (whole
// frames); the new frame's id and time are those of the last of them, so that the next message
// frame of the batch decodes after it as after them.
func AdvanceExportBase(dst, pub, frames []byte) ([]byte, error) {
	body, size, ok := exportFrameAt(pub)
	if !ok {
		return dst, malformed(0, "bad publisher frame length")
	}
	var b ExportBase
	if err := b.decode(body, size-len(body)); err != nil {
		return dst, err
	}
	for off := 0; off < len(frames); {
		body, size, ok := exportFrameAt(frames[off:])
		if !ok || body[0] == exportFramePublisher {
			return dst, malformed(off, "not a message frame")
		}
		var m Message
		if err := m.decodeExportIDs(&b, body, off); err != nil {
			return dst, err
		}
		b.ID, b.Created = m.ID, m.Created
		off += size
	}
	return AppendExportBase(dst, &b), nil
}
