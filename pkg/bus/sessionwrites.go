package bus

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// SessionWrite is one operation of WriteSessions: Append, Q2Append or Commit.
type SessionWrite interface {
	queue(b *Bus, ctx context.Context, p redis.Pipeliner)
	done(err error)
}

// Append adds messages (one-message envelope batches, AppendMessage) to one persistent
// session's log, if its incarnation is still Inc. At most Max messages may wait in the log (0:
// no bound); the ones beyond are not added (Accepted tells how many were).
type Append struct {
	Session string
	Inc     uint64
	Max     int
	Msgs    [][]byte

	// Results, set by WriteSessions.
	Err      error  // the command failed (Redis error or connection); nothing is known
	Gone     bool   // the session ended or was made again: nothing appended
	Accepted int    // messages appended, in order from the first
	Owner    string // the replica holding the session
	Online   bool   // its client is connected there

	cmd *redis.Cmd
}

func (a *Append) args(dst []any) []any {
	size := 0
	for _, m := range a.Msgs {
		size += len(m)
	}
	msgs := make([]byte, 0, size)
	ends := make([]byte, 0, 8*len(a.Msgs))
	for _, m := range a.Msgs {
		msgs = append(msgs, m...)
		ends = fmt.Appendf(ends, "%08x", len(msgs))
	}
	return append(dst, strconv.FormatUint(a.Inc, 10), a.Max, len(a.Msgs), msgs, ends)
}

func (a *Append) queue(b *Bus, ctx context.Context, p redis.Pipeliner) {
	a.cmd = appendScript.EvalSha(ctx, p, b.sessionKeys(a.Session), a.args(nil)...)
}

func (a *Append) setResult(vals []any) {
	if len(vals) < 4 {
		a.Err = fmt.Errorf("%w: append result", ErrMalformed)
		return
	}
	st, _ := vals[0].(int64)
	n, _ := vals[1].(int64)
	a.Gone = st == 0
	a.Accepted = int(n)
	a.Owner = asString(vals[2])
	a.Online = asString(vals[3]) == "1"
}

func (a *Append) done(err error) {
	if err != nil {
		a.Err = err
		return
	}
	vals, err := a.cmd.Slice()
	if err != nil {
		a.Err = fmt.Errorf("%w: append: %w", ErrUnavailable, err)
		return
	}
	a.setResult(vals)
}

// Q2Append records that Publisher's session received QoS 2 packet id PacketID (message MsgID)
// and appends the message to its targets (each Append with one message), in one script on a
// single Redis: after a crash, a resend of the packet id finds it recorded and appends nothing
// (Dup), so no subscriber gets the message twice. On a Redis Cluster the sessions live in
// different slots: the appends go first and the record after, so a crash in between may lead
// to a duplicate for the subscribers already appended to, never to a loss.
type Q2Append struct {
	Publisher string
	Epoch     uint64 // the publisher's claim: a later claim fences the script (ErrFenced)
	PacketID  uint16
	MsgID     MessageID
	Targets   []*Append

	Err error
	Dup bool

	cmd  *redis.Cmd
	cmds []redis.Cmder // cluster: the record
}

func (q *Q2Append) queue(b *Bus, ctx context.Context, p redis.Pipeliner) {
	if b.opts.Cluster {
		for _, t := range q.Targets {
			t.queue(b, ctx, p)
		}
		q.cmds = []redis.Cmder{
			p.HSetNX(ctx, b.names.Session(q.Publisher), "q:"+strconv.Itoa(int(q.PacketID)), hex.EncodeToString(q.MsgID[:])),
		}
		return
	}
	keys := []string{b.names.Session(q.Publisher)}
	args := []any{int(q.PacketID), hex.EncodeToString(q.MsgID[:]), len(q.Targets), strconv.FormatUint(q.Epoch, 10)}
	for _, t := range q.Targets {
		keys = append(keys, b.sessionKeys(t.Session)...)
		args = t.args(args)
	}
	q.cmd = q2AppendScript.EvalSha(ctx, p, keys, args...)
}

func (q *Q2Append) done(err error) {
	if err != nil {
		q.Err = err
		for _, t := range q.Targets {
			t.Err = err
		}
		return
	}
	if q.cmds != nil { // cluster
		for _, t := range q.Targets {
			t.done(nil)
			if t.Err != nil {
				q.Err = t.Err
			}
		}
		if e := q.cmds[0].Err(); e != nil {
			q.Err = fmt.Errorf("%w: qos 2 record: %w", ErrUnavailable, e)
		}
		return
	}
	vals, err := q.cmd.Slice()
	if err != nil {
		q.Err = fmt.Errorf("%w: qos 2 append: %w", ErrUnavailable, err)
		for _, t := range q.Targets {
			t.Err = q.Err
		}
		return
	}
	if len(vals) == 0 {
		q.Err = fmt.Errorf("%w: qos 2 append result", ErrMalformed)
		return
	}
	switch st, _ := vals[0].(int64); st {
	case -1:
		q.Err = fmt.Errorf("qos 2 append for %s: %w", q.Publisher, ErrFenced)
		for _, t := range q.Targets {
			t.Err = q.Err
		}
		return
	case 0:
		q.Dup = true
		return
	}
	vals = vals[1:]
	for _, t := range q.Targets {
		if len(vals) < 4 {
			t.Err = fmt.Errorf("%w: qos 2 append result", ErrMalformed)
			q.Err = t.Err
			return
		}
		t.setResult(vals[:4])
		vals = vals[4:]
	}
}

// Commit is the owner's write to its session, fenced by Epoch. Unset fields change nothing.
type Commit struct {
	Session string
	Epoch   uint64

	Cursor   *LogPos  // the first message not yet done
	Marks    bool     // write Done and Released (both, even when empty)
	Done     []uint64 // sequence numbers above Cursor that are done
	Released []uint64 // QoS 2 sequence numbers above Cursor whose PUBREL is due
	// TrimBefore deletes the log entries before this entry id (those fully done).
	TrimBefore string
	DelQ2      []uint16 // inbound QoS 2 packet ids whose exchange ended
	State      []byte   // the broker's blob
	// SetExpiry writes Expiry, the session expiry interval (negative: never), which
	// ReleaseOrphans uses when the owner dies.
	SetExpiry bool
	Expiry    time.Duration
	// Offline marks the client disconnected; the session's keys expire after OfflineTTL (0:
	// never).
	Offline    bool
	OfflineTTL time.Duration
	// Online marks the client connected here again (after a replica that thought this one dead
	// marked it offline): the keys stop expiring.
	Online bool
	End    bool // delete the session

	Err    error // nil, ErrFenced, or a failure (nothing is known)
	Ended  bool  // End was done
	cmd    *redis.Cmd
	hasOps bool
}

func (c *Commit) queue(b *Bus, ctx context.Context, p redis.Pipeliner) {
	args := []any{strconv.FormatUint(c.Epoch, 10)}
	if c.Cursor != nil {
		args = append(args, "cur", c.Cursor.String())
	}
	if c.Marks {
		args = append(args, "dn", formatSeqs(c.Done), "rl", formatSeqs(c.Released))
	}
	if c.TrimBefore != "" {
		args = append(args, "trim", c.TrimBefore)
	}
	for _, id := range c.DelQ2 {
		args = append(args, "q2del", int(id))
	}
	if c.State != nil {
		args = append(args, "state", c.State)
	}
	if c.SetExpiry {
		ms := int64(-1)
		if c.Expiry >= 0 {
			ms = c.Expiry.Milliseconds()
		}
		args = append(args, "exp", ms)
	}
	if c.Offline {
		args = append(args, "off", c.OfflineTTL.Milliseconds())
	}
	if c.Online {
		args = append(args, "on", "")
	}
	if c.End {
		args = append(args, "end", "")
	}
	c.cmd = commitScript.EvalSha(ctx, p, b.sessionKeys(c.Session), args...)
}

func (c *Commit) done(err error) {
	if err != nil {
		c.Err = err
		return
	}
	n, err := c.cmd.Int()
	switch {
	case err != nil:
		c.Err = fmt.Errorf("%w: session commit: %w", ErrUnavailable, err)
	case n == 0:
		c.Err = ErrFenced
	case n == 2:
		c.Ended = true
	}
}

// WriteSessions sends ws in one pipeline, in order, and sets each one's results. It returns an
// error only when the pipeline as a whole failed (then every write's Err is set too); a write
// that Redis refused has its own Err. Scripts are loaded on first use (EVALSHA, then again after
// loading them when Redis answers NOSCRIPT, as after a restart: NOSCRIPT means none ran).
//
// The pipeline is never retried on a connection error: Redis may have run it before the reply
// was lost, and an append run twice is a message delivered twice. The caller decides (a
// publisher is told the message was not stored, and sends it again).
func (b *Bus) WriteSessions(ctx context.Context, ws []SessionWrite) error {
	if len(ws) == 0 {
		return nil
	}
	run := func() error {
		_, err := b.pubc().Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, w := range ws {
				w.queue(b, ctx, p)
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && isNoScript(err) {
		if lerr := b.loadScripts(ctx); lerr != nil {
			err = lerr
		} else {
			// NOSCRIPT means Redis ran none of the scripts (it lost them in a restart); writes
			// that are not scripts (the cluster's QoS 2 record, HSETNX) are idempotent.
			err = run()
		}
	}
	var pipeErr error
	if err != nil && !isRedisError(err) {
		pipeErr = fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrUncertain, err)
	}
	for _, w := range ws {
		w.done(pipeErr)
	}
	return pipeErr
}
