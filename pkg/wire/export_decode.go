package wire

import (
	"encoding/binary"
	"fmt"
)

// Decoding export batches (the format is described in export.go).

// DecodeExportBatch appends the messages of an export batch (ExportVersion) to dst[:0] and
// returns the result, like DecodeBatchInto: the messages alias batch, any malformed frame
// rejects the batch whole (ErrMalformed), it never panics, and it allocates at most the message
// slice (sized after counting the message frames, each at least 10 wire bytes for about 250
// bytes of Message) and exactly sized user property slices (at least 2 wire bytes per 32-byte
// element): under 32 bytes of heap per byte of input.
func DecodeExportBatch(dst []Message, batch []byte) ([]Message, error) {
	dst = dst[:0]
	if err := checkVersion(batch, ExportVersion, "not an export batch: version"); err != nil {
		return dst, err
	}
	// First pass: frames only, to size the slice once.
	n, publisher := 0, false
	for off := 1; off < len(batch); {
		size, isPub, ok := ExportFrame(batch[off:])
		if !ok {
			return dst, malformed(off, "bad frame length")
		}
		if !isPub {
			if !publisher {
				return dst, malformed(off, "message before any publisher frame")
			}
			if size < 1+minExportMessage {
				return dst, malformed(off, "message frame too short")
			}
			n++
		}
		publisher = publisher || isPub
		off += size
	}
	if cap(dst) < n {
		dst = make([]Message, 0, n)
	}
	var base ExportBase
	for off := 1; off < len(batch); {
		body, size, _ := exportFrameAt(batch[off:]) // whole: checked by the first pass
		at := off + size - len(body)
		var err error
		if body[0] == exportFramePublisher {
			err = base.decode(body, at)
		} else {
			dst = dst[:len(dst)+1]
			err = dst[len(dst)-1].decodeExport(&base, body, at)
		}
		if err != nil {
			return dst[:0], err
		}
		off += size
	}
	return dst, nil
}

// decode reads a publisher frame's body b, which starts at offset at of its batch.
func (b *ExportBase) decode(body []byte, at int) error {
	if body[0] != exportFramePublisher {
		return malformed(at, fmt.Sprintf("unknown frame kind %d", body[0]))
	}
	d := decoder{b: body, off: 1, base: at}
	b.Origin = d.str("origin")
	b.ClientID = d.str("client id")
	b.Username = d.str("username")
	if d.err == nil && len(body)-d.off < 16+8 {
		d.fail("publisher id and created time missing")
	}
	if d.err != nil {
		return d.err
	}
	copy(b.ID[:], body[d.off:])
	b.Created = int64(binary.LittleEndian.Uint64(body[d.off+16:]))
	return nil
}

// decodeExport decodes a message frame's body (at offset at of its batch) after base's
// publisher frame.
func (m *Message) decodeExport(base *ExportBase, body []byte, at int) error {
	if body[0] != exportFrameMessage {
		return malformed(at, fmt.Sprintf("unknown frame kind %d", body[0]))
	}
	if len(body) < minExportMessage {
		return malformed(at, "message frame too short")
	}
	hdr := body[1]
	*m = Message{Origin: base.Origin, ClientID: base.ClientID, Username: base.Username,
		QoS: hdr & hdrQoS, Retain: hdr&hdrRetain != 0, Props: PropMask(hdr >> hdrPropsAt)}
	if m.QoS > 2 {
		return malformed(at+1, "QoS 3")
	}
	d := decoder{b: body, off: 2, base: at}
	m.decodeIDs(&d, base)
	if hdr&hdrExpiry != 0 {
		m.Expiry = m.Created + unzigzag(d.uvarint("expiry"))
	}
	m.Topic = d.str("topic")
	m.Payload = d.bytes("payload")
	m.decodeProps(&d)
	m.decodeUserProps(&d)
	if d.err == nil {
		base.ID, base.Created = m.ID, m.Created
	}
	return d.err
}

// decodeIDs reads a message frame's id and created time, differences from base's.
func (m *Message) decodeIDs(d *decoder, base *ExportBase) {
	bms, bseq, bnode := idParts(&base.ID)
	ms := bms + uint64(unzigzag(d.uvarint("id millisecond")))
	seq := bseq + uint64(unzigzag(d.uvarint("id sequence")))
	node := bnode + uint32(unzigzag(d.uvarint("id node")))
	m.ID = idFromParts(ms, seq, node)
	m.Created = base.Created + unzigzag(d.uvarint("created time"))
}

// decodeExportIDs reads only the id and created time of a message frame's body (at offset at),
// after base.
func (m *Message) decodeExportIDs(base *ExportBase, body []byte, at int) error {
	if len(body) < minExportMessage || body[0] != exportFrameMessage {
		return malformed(at, "not a message frame")
	}
	d := decoder{b: body, off: 2, base: at}
	m.decodeIDs(&d, base)
	return d.err
}

func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }
