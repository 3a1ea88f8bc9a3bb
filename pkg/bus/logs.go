package bus

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// LogEntry is one append to a session's log.
type LogEntry struct {
	ID   string   // stream entry id
	Seq  uint64   // sequence number of Msgs[0]; Msgs[i] has Seq+i
	Msgs [][]byte // one-message envelope batches (DecodeBatch)
}

// LogRead asks for the entries of one session's log from an entry on.
type LogRead struct {
	Session string
	From    string // entry id to start at
	After   bool   // start after From instead of at it
	Count   int    // at most this many entries

	Entries []LogEntry
	Err     error
	cmd     *redis.XMessageSliceCmd
}

// ReadLogs reads the logs of several sessions in one pipeline.
func (b *Bus) ReadLogs(ctx context.Context, rs []*LogRead) error {
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range rs {
			start := r.From
			if r.After {
				start = "(" + start
			}
			r.cmd = p.XRangeN(ctx, b.names.SessionLog(r.Session), start, "+", int64(max(r.Count, 1)))
		}
		return nil
	})
	if err != nil && !isRedisError(err) {
		err = fmt.Errorf("%w: read session logs: %w", ErrUnavailable, err)
		for _, r := range rs {
			r.Err = err
		}
		return err
	}
	for _, r := range rs {
		xs, err := r.cmd.Result()
		if err != nil {
			r.Err = fmt.Errorf("%w: read session log: %w", ErrUnavailable, err)
			continue
		}
		r.Entries = r.Entries[:0]
		for _, x := range xs {
			e, ok := decodeLogEntry(x)
			if !ok {
				b.log.Warn().Str("client_id", r.Session).Str("entry", x.ID).Msg("bus: undecodable session log entry skipped")
				continue
			}
			r.Entries = append(r.Entries, e)
		}
	}
	return nil
}

// decodeLogEntry reads an entry's fields: s and b.
func decodeLogEntry(x redis.XMessage) (LogEntry, bool) {
	e := LogEntry{ID: x.ID}
	s, ok := x.Values["s"].(string)
	if !ok {
		return e, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return e, false
	}
	e.Seq = seq
	b, ok := x.Values["b"].(string)
	if !ok {
		return e, false
	}
	e.Msgs, ok = SplitLogBatches([]byte(b))
	return e, ok && len(e.Msgs) > 0
}

// SplitLogBatches splits one-message envelope batches written one after the other (a log
// entry's messages) into slices of p. It checks the framing only (version byte, then a length
// that fits); false: p is not such a sequence.
func SplitLogBatches(p []byte) ([][]byte, bool) {
	n := 0
	for off := 0; off < len(p); n++ {
		end, ok := nextBatch(p, off)
		if !ok {
			return nil, false
		}
		off = end
	}
	out := make([][]byte, 0, n)
	for off := 0; off < len(p); {
		end, _ := nextBatch(p, off)
		out = append(out, p[off:end:end])
		off = end
	}
	return out, true
}

// nextBatch returns the end of the one-message batch that starts at off.
func nextBatch(p []byte, off int) (int, bool) {
	if p[off] != EnvelopeVersion {
		return 0, false
	}
	l, k := binary.Uvarint(p[off+1:])
	if k <= 0 || l > uint64(len(p)-off-1-k) {
		return 0, false
	}
	return off + 1 + k + int(l), true
}
