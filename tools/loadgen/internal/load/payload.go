package load

import "encoding/binary"

// The payload of every message the tool publishes:
//
//	[0:8]   send time, ns on the tool's monotonic clock (big endian)
//	[8:12]  publisher id
//	[12:16] sequence number, 0..n-1
//	[16:]   padding up to -size
//
// Publishers and subscribers run in one process, so send and receive times share a
// clock and latency needs no clock sync.

func newPayload(size, pub int) []byte {
	p := make([]byte, size)
	for i := payloadHeader; i < size; i++ {
		p[i] = 'x'
	}
	binary.BigEndian.PutUint32(p[8:12], uint32(pub))
	return p
}

func stampPayload(p []byte, seq int, sentNs int64) {
	binary.BigEndian.PutUint64(p[0:8], uint64(sentNs))
	binary.BigEndian.PutUint32(p[12:16], uint32(seq))
}

// parsePayload returns ok false for a payload too short to carry the header.
func parsePayload(p []byte) (pub, seq int, sentNs int64, ok bool) {
	if len(p) < payloadHeader {
		return 0, 0, 0, false
	}
	return int(binary.BigEndian.Uint32(p[8:12])), int(binary.BigEndian.Uint32(p[12:16])),
		int64(binary.BigEndian.Uint64(p[0:8])), true
}
