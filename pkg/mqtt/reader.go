package mqtt

import (
	"bufio"
	"io"
	"math/bits"
	"strconv"
	"unsafe"
)

// Decode parses the body of a packet whose fixed header is fh, for the connection's protocol
// version v (a CONNECT carries its own version and ignores v). body must be exactly
// fh.Remaining bytes. The packet is returned as a pointer to its struct (*Publish, *Connect, ...)
// and aliases body, which must not be modified while the packet is in use.
//
// On error the packet, when the type is known, is returned as well, holding what was decoded
// before the error: a *Connect with an unsupported protocol level has its Version, and a
// *Publish whose topic has a wildcard has its PacketID, so the caller can answer properly.
// Errors are *Error values carrying the reason code to answer with.
func Decode(fh FixedHeader, body []byte, v Version) (Packet, error) {
	if len(body) != fh.Remaining {
		return nil, malformed("body of " + strconv.Itoa(len(body)) + " bytes for a remaining length of " +
			strconv.Itoa(fh.Remaining))
	}
	var pk interface {
		Packet
		Decode(flags byte, body []byte, v Version) error
	}
	switch fh.Type {
	case CONNECT:
		pk = new(Connect)
	case CONNACK:
		pk = new(Connack)
	case PUBLISH:
		pk = new(Publish)
	case PUBACK:
		pk = new(Puback)
	case PUBREC:
		pk = new(Pubrec)
	case PUBREL:
		pk = new(Pubrel)
	case PUBCOMP:
		pk = new(Pubcomp)
	case SUBSCRIBE:
		pk = new(Subscribe)
	case SUBACK:
		pk = new(Suback)
	case UNSUBSCRIBE:
		pk = new(Unsubscribe)
	case UNSUBACK:
		pk = new(Unsuback)
	case PINGREQ:
		pk = new(Pingreq)
	case PINGRESP:
		pk = new(Pingresp)
	case DISCONNECT:
		pk = new(Disconnect)
	case AUTH:
		pk = new(Auth)
	default:
		return nil, checkFlags(fh.Type, fh.Flags)
	}
	return pk, pk.Decode(fh.Flags, body, v)
}

// Parse decodes the packet at the start of buf, for a connection of protocol version v. It
// returns ErrIncomplete while buf holds only part of the packet, but a *Error with code Packet
// Too Large as soon as the fixed header is complete and declares more than maxPacketSize bytes
// (when maxPacketSize > 0). n is the length of the packet, also when decoding its body failed;
// it is 0 with ErrIncomplete and with errors in the fixed header. The packet aliases buf.
//
// Unlike Reader, Parse keeps no state: after a CONNECT the caller passes the version it carries.
func Parse(buf []byte, v Version, maxPacketSize int) (pk Packet, n int, err error) {
	fh, hl, err := parseFixedHeader(buf, maxPacketSize)
	if err != nil {
		return nil, 0, err
	}
	n = hl + fh.Remaining
	if len(buf) < n {
		return nil, 0, ErrIncomplete
	}
	pk, err = Decode(fh, buf[hl:n:n], v)
	return pk, n, err
}

// Reader reads packets from a byte stream one at a time. It tracks the protocol version: it
// starts unknown (so the first packet must be a CONNECT, or the caller calls SetVersion, as a
// client does after sending its CONNECT), and each CONNECT read sets it.
type Reader struct {
	r   io.Reader
	br  io.ByteReader // the same reader as r
	max int
	v   Version
}

// NewReader returns a Reader of r that refuses packets larger than maxPacketSize bytes (no limit
// but the protocol's when maxPacketSize <= 0; a server always sets one). If r is not an
// io.ByteReader it is wrapped in a bufio.Reader.
func NewReader(r io.Reader, maxPacketSize int) *Reader {
	rd := &Reader{max: maxPacketSize}
	if br, ok := r.(interface {
		io.Reader
		io.ByteReader
	}); ok {
		rd.r, rd.br = br, br
	} else {
		b := bufio.NewReader(r)
		rd.r, rd.br = b, b
	}
	return rd
}

// SetVersion sets the protocol version used to decode packets other than CONNECT.
func (r *Reader) SetVersion(v Version) { r.v = v }

// Version is the protocol version packets are decoded with.
func (r *Reader) Version() Version { return r.v }

// ReadPacket reads and decodes the next packet. The body is allocated only after the fixed
// header has passed the size check, and a body above 256 KiB only as its bytes arrive. Each
// packet gets its own body, which it aliases, so packets stay valid after later reads. A PUBLISH
// of up to 256 KiB costs one allocation: its struct and body share it.
//
// Errors: io.EOF when the stream ends between packets, io.ErrUnexpectedEOF inside one, the
// reader's own errors, or a *Error from the fixed header or Decode (then the packet, if any, is
// returned too, as Decode does). After a CONNECT with a known protocol level, even one that
// failed to decode later on, the reader's version is the CONNECT's.
func (r *Reader) ReadPacket() (Packet, error) {
	fh, err := ReadFixedHeader(r.br, r.max)
	if err != nil {
		return nil, err
	}
	if fh.Type == PUBLISH && fh.Remaining <= eagerBody {
		p, body := newPublishWithBody(fh.Remaining)
		if err := r.readFull(body); err != nil {
			return nil, err
		}
		return p, p.Decode(fh.Flags, body, r.v)
	}
	body, err := r.readBody(fh.Remaining)
	if err != nil {
		return nil, err
	}
	pk, err := Decode(fh, body, r.v)
	if c, ok := pk.(*Connect); ok && knownVersion(c.Version) {
		r.v = c.Version
	}
	return pk, err
}

// eagerBody is the largest body allocated whole before its bytes arrive. A larger one grows as
// they do (doubling, so at most twice its size in all), so a peer that announces a large packet
// and then sends nothing costs at most this much, whatever the maximum packet size.
const eagerBody = 256 << 10

func (r *Reader) readBody(n int) ([]byte, error) {
	size := min(n, eagerBody)
	body := make([]byte, size)
	for got := 0; ; {
		if err := r.readFull(body[got:]); err != nil {
			return nil, err
		}
		if got = len(body); got == n {
			return body, nil
		}
		grown := make([]byte, min(2*got, n))
		copy(grown, body)
		body = grown
	}
}

func (r *Reader) readFull(body []byte) error {
	if _, err := io.ReadFull(r.r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// publishBox holds a Publish and its body in one allocation. The GC scans only the Publish: the
// byte array after it holds no pointers.
type publishBox[A any] struct {
	p   Publish
	buf A
}

func boxedPublish[A any](n int) (*Publish, []byte) {
	b := new(publishBox[A])
	return &b.p, unsafe.Slice((*byte)(unsafe.Pointer(&b.buf)), n)
}

const (
	publishSize = int(unsafe.Sizeof(Publish{}))
	boxPage     = 8 << 10 // the allocator rounds objects above 32 KiB up to 8 KiB pages
)

// Boxes for bodies up to 16 KiB, by powers of two from 64 bytes.
var smallBoxes = [...]func(int) (*Publish, []byte){
	boxedPublish[[64]byte], boxedPublish[[128]byte], boxedPublish[[256]byte], boxedPublish[[512]byte], boxedPublish[[1 << 10]byte], boxedPublish[[2 << 10]byte], boxedPublish[[4 << 10]byte], boxedPublish[[8 << 10]byte], boxedPublish[[16 << 10]byte],
}

// Boxes of 3 to 32 pages (24 to 256 KiB) less the Publish, so a box wastes no more than the
// allocator's own rounding of a body that size would.
var largeBoxes = [...]func(int) (*Publish, []byte){
	boxedPublish[[3*boxPage - publishSize]byte],
	boxedPublish[[4*boxPage - publishSize]byte],
	boxedPublish[[5*boxPage - publishSize]byte],
	boxedPublish[[6*boxPage - publishSize]byte],
	boxedPublish[[7*boxPage - publishSize]byte],
	boxedPublish[[8*boxPage - publishSize]byte],
	boxedPublish[[9*boxPage - publishSize]byte],
	boxedPublish[[10*boxPage - publishSize]byte],
	boxedPublish[[11*boxPage - publishSize]byte],
	boxedPublish[[12*boxPage - publishSize]byte],
	boxedPublish[[13*boxPage - publishSize]byte],
	boxedPublish[[14*boxPage - publishSize]byte],
	boxedPublish[[15*boxPage - publishSize]byte],
	boxedPublish[[16*boxPage - publishSize]byte],
	boxedPublish[[17*boxPage - publishSize]byte],
	boxedPublish[[18*boxPage - publishSize]byte],
	boxedPublish[[19*boxPage - publishSize]byte],
	boxedPublish[[20*boxPage - publishSize]byte],
	boxedPublish[[21*boxPage - publishSize]byte],
	boxedPublish[[22*boxPage - publishSize]byte],
	boxedPublish[[23*boxPage - publishSize]byte],
	boxedPublish[[24*boxPage - publishSize]byte],
	boxedPublish[[25*boxPage - publishSize]byte],
	boxedPublish[[26*boxPage - publishSize]byte],
	boxedPublish[[27*boxPage - publishSize]byte],
	boxedPublish[[28*boxPage - publishSize]byte],
	boxedPublish[[29*boxPage - publishSize]byte],
	boxedPublish[[30*boxPage - publishSize]byte],
	boxedPublish[[31*boxPage - publishSize]byte],
	boxedPublish[[32*boxPage - publishSize]byte],
}

// newPublishWithBody returns a Publish and an n byte body sharing one allocation, for bodies up
// to 256 KiB (eagerBody; beyond that the second allocation is noise next to the body, and they
// are allocated apart). Small bodies are rounded up to a power of two, at most doubling a body of a
// few hundred bytes; large ones to whole pages, as the allocator would round them anyway.
func newPublishWithBody(n int) (*Publish, []byte) {
	switch {
	case n == 0:
		return new(Publish), nil
	case n <= 16<<10:
		return smallBoxes[max(0, bits.Len(uint(n-1))-6)](n)
	case n <= 32*boxPage-publishSize:
		return largeBoxes[(n+publishSize+boxPage-1)/boxPage-3](n)
	}
	return new(Publish), make([]byte, n)
}
