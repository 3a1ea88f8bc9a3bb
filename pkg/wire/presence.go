package wire

import (
	"encoding/binary"
	"fmt"
)

// Presence events: a client's CONNECT accepted, and the end of that connection with its cause.
// Brokers queue them with bus.ExportPresence into the export stream, beside the messages, in
// entries of their own: field PresenceField instead of bus.ExportField, holding a presence batch.
//
//	batch = version:u8 (=1)  event*
//	event = length:uvarint  body[length]
//	body  = id[16]  connection[16]  kind:u8  flags:u8  time:int64 LE  connected:int64 LE
//	        protocol:u8  keepalive:uvarint  replica:str  client:str  username:str  remote:str
//	        cause:str
//	        (bytes after the cause are ignored: room for later fields)
//	flags = bit 0 session present, bit 1 clean start
//
// The framing is the envelope's, so an entry holds as many events as came together.

// PresenceField is the stream entry field that holds a presence batch (DecodePresenceBatch).
const PresenceField = "p"

// PresenceKind says what happened.
type PresenceKind byte

// Presence kinds.
const (
	PresenceConnect    PresenceKind = 1 // CONNECT accepted, CONNACK sent
	PresenceDisconnect PresenceKind = 2 // the connection ended (Cause says why)
)

func (k PresenceKind) String() string {
	switch k {
	case PresenceConnect:
		return "connect"
	case PresenceDisconnect:
		return "disconnect"
	}
	return fmt.Sprintf("presence kind %d", byte(k))
}

// Presence is one connect or disconnect of an MQTT client on a broker replica.
type Presence struct {
	ID MessageID // the event's own id (the events table's event_id)
	// Connection identifies the connection: its connect and its disconnect carry the same one.
	Connection MessageID
	Kind       PresenceKind
	Time       int64 // when it happened, Unix nanoseconds
	// ConnectedAt is when the connection's CONNECT was accepted (Unix ns): Time for a connect,
	// the start of the connection for a disconnect.
	ConnectedAt    int64
	Replica        string // broker replica id
	ClientID       string
	Username       string // "" when none
	RemoteAddr     string // host:port of the client as the replica saw it
	Protocol       byte   // protocol level of the CONNECT: 3 (3.1), 4 (3.1.1), 5
	KeepAlive      uint16 // seconds, as granted
	SessionPresent bool   // connect: an existing session was resumed
	CleanStart     bool   // connect: Clean Start (3.x: Clean Session)
	Cause          string // disconnect: why (the broker's cause names); "" for a connect
}

const (
	presSessionPresent = 1 << 0
	presCleanStart     = 1 << 1
)

// minPresenceBody: two ids, kind, flags, two times, protocol, keep alive, five empty strings.
const minPresenceBody = 16 + 16 + 1 + 1 + 8 + 8 + 1 + 1 + 5

func (p *Presence) bodySize() int {
	return 16 + 16 + 1 + 1 + 8 + 8 + 1 + uvarintLen(uint64(p.KeepAlive)) + strLen(len(p.Replica)) +
		strLen(len(p.ClientID)) + strLen(len(p.Username)) + strLen(len(p.RemoteAddr)) + strLen(len(p.Cause))
}

// Size returns how many bytes AppendPresence adds for p.
func (p *Presence) Size() int {
	b := p.bodySize()
	return uvarintLen(uint64(b)) + b
}

// AppendPresence appends p's framed encoding to dst, which must already hold a batch header
// (AppendBatchHeader) or earlier events after one.
func AppendPresence(dst []byte, p *Presence) []byte {
	body := p.bodySize()
	dst = growBytes(dst, uvarintLen(uint64(body))+body)
	dst = binary.AppendUvarint(dst, uint64(body))
	dst = append(dst, p.ID[:]...)
	dst = append(dst, p.Connection[:]...)
	var flags byte
	if p.SessionPresent {
		flags |= presSessionPresent
	}
	if p.CleanStart {
		flags |= presCleanStart
	}
	dst = append(dst, byte(p.Kind), flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Time))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(p.ConnectedAt))
	dst = append(dst, p.Protocol)
	dst = binary.AppendUvarint(dst, uint64(p.KeepAlive))
	dst = appendStr(dst, p.Replica)
	dst = appendStr(dst, p.ClientID)
	dst = appendStr(dst, p.Username)
	dst = appendStr(dst, p.RemoteAddr)
	return appendStr(dst, p.Cause)
}

// DecodePresenceBatch decodes every event of a presence batch. The events alias batch (their
// strings point into it). Like DecodeBatch it never panics, checks every length, and rejects a
// malformed batch whole (ErrMalformed).
func DecodePresenceBatch(batch []byte) ([]Presence, error) {
	if len(batch) == 0 {
		return nil, malformed(0, "empty batch")
	}
	if batch[0] != EnvelopeVersion {
		return nil, malformed(0, fmt.Sprintf("unknown version %d", batch[0]))
	}
	n := 0
	for off := 1; off < len(batch); {
		l, k := binary.Uvarint(batch[off:])
		if k <= 0 {
			return nil, malformed(off, "bad event length")
		}
		if l < minPresenceBody || l > uint64(len(batch)-off-k) {
			return nil, malformed(off, "event length out of range")
		}
		off += k + int(l)
		n++
	}
	out := make([]Presence, 0, n)
	for off := 1; off < len(batch); {
		l, k := binary.Uvarint(batch[off:])
		off += k
		b := batch[off : off+int(l)]
		var p Presence
		copy(p.ID[:], b[:16])
		copy(p.Connection[:], b[16:32])
		p.Kind = PresenceKind(b[32])
		flags := b[33]
		p.SessionPresent = flags&presSessionPresent != 0
		p.CleanStart = flags&presCleanStart != 0
		p.Time = int64(binary.LittleEndian.Uint64(b[34:]))
		p.ConnectedAt = int64(binary.LittleEndian.Uint64(b[42:]))
		p.Protocol = b[50]
		d := decoder{b: b, off: 51, base: off}
		ka := d.uvarint("keep alive")
		if ka > 0xffff {
			d.fail("keep alive above 16 bits")
		}
		p.KeepAlive = uint16(ka)
		p.Replica = d.str("replica")
		p.ClientID = d.str("client id")
		p.Username = d.str("username")
		p.RemoteAddr = d.str("remote address")
		p.Cause = d.str("cause")
		if d.err != nil {
			return nil, d.err
		}
		if p.Kind != PresenceConnect && p.Kind != PresenceDisconnect {
			return nil, malformed(off+32, fmt.Sprintf("unknown presence kind %d", b[32]))
		}
		out = append(out, p)
		off += int(l)
	}
	return out, nil
}
