package bus

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Durable sessions: a persistent MQTT session's state and pending QoS 1/2 messages in Redis, so
// that they outlive the replica that holds the client's connection.
//
// Every key of one session shares the hash tag {s:<client id>} (one slot: scripts may use them
// together):
//
//	Session(id)     HASH  epoch    fencing token of the current claim (see ClaimSession)
//	                      owner    replica holding the session; online "1" while its client is connected
//	                      inc      incarnation: the epoch of the claim that created the session
//	                      app      messages ever appended to the log
//	                      cur      "<entry id> <seq>": the first message not yet done, and its entry
//	                      dn, rl   sequence numbers above cur that are done / whose PUBREL is due
//	                      state    the broker's own blob (subscriptions, expiry)
//	                      exp      the session expiry interval in ms (-1: never)
//	                      q:<pid>  an inbound QoS 2 packet id received, its PUBREL not yet (message id)
//	SessionLog(id)  STREAM one entry per append: s = sequence number of its first message,
//	                      b = its messages, one-message envelope batches one after the other
//	                      (each starts with the version byte and is framed: SplitLogBatches)
//
// Fencing: a claim sets epoch to a number larger than any earlier one (the larger of the old
// epoch + 1 and Redis' clock in microseconds, so it stays monotonic even after the session expired
// and was made again). Every write by the owner (Commit) carries its epoch and is refused when it
// differs, in the same script: a replica that lost the session while cut off from Redis can never
// overwrite the new owner's state. Writes by publishers (Append) do not need to be the owner: they
// carry the incarnation they found in the subscription index, and are refused when the session
// is gone or was made again (clean start) meanwhile.
//
// The cluster-wide index of persistent subscriptions (Names.DurableSubs, a HASH client id ->
// subscriptions) tells every replica which persistent sessions a message must be appended to,
// whichever replica holds them and whether it is alive. Changes are announced on
// Names.DurableSubsChanges like route changes.

// ErrFenced is returned for an owner's write refused because another claim took the session.
var ErrFenced = errors.New("bus: session claimed by another replica (fenced)")

// ErrUncertain is wrapped (with ErrUnavailable) by the errors of writes that were sent to Redis
// and got no answer: Redis may have applied them or not.
var ErrUncertain = errors.New("bus: sent, outcome unknown")

// LogPos is a position in a session's log: the stream entry id holding message Seq.
type LogPos struct {
	ID  string // stream entry id; "0-0" before the first entry
	Seq uint64 // sequence number of the message, 1 for the first ever appended
}

func (p LogPos) String() string { return p.ID + " " + strconv.FormatUint(p.Seq, 10) }

func parseLogPos(s string) (LogPos, error) {
	id, seq, ok := strings.Cut(s, " ")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || id == "" {
		return LogPos{}, fmt.Errorf("%w: log position %q", ErrMalformed, s)
	}
	return LogPos{ID: id, Seq: n}, nil
}

// SessionClaim is what ClaimSession found and set.
type SessionClaim struct {
	Epoch      uint64 // the fencing token of this claim: pass it to Commit
	PrevOwner  string // replica that held the session before ("" if none)
	PrevOnline bool   // its client was connected there (as far as Redis knows)
	Present    bool   // an existing session was resumed (not a clean start, and one existed)
	Inc        uint64 // incarnation
	State      []byte // the broker's blob, nil if never saved
	Appended   uint64 // messages ever appended
	Cursor     LogPos // the first message not yet done
	Done       []uint64
	Released   []uint64
	InQoS2     map[uint16]MessageID
}

// The scripts. Each touches the keys of one session only (one slot on a Redis Cluster).
var (
	// KEYS: session, log. ARGV: replica, clean ("1"/"0"), expiry ms (-1 never, 0 a clean
	// session: not resumable). Returns {epoch, prev owner, prev online, present, HGETALL}.
	claimScript = redis.NewScript(`
local t = redis.call('TIME')
local nowus = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
local epoch = string.format('%.0f', math.max(old + 1, nowus))
local h = redis.call('HMGET', KEYS[1], 'inc', 'owner', 'online', 'exp')
local present = h[1] and ARGV[2] == '0' and h[4] ~= '0'
if not present then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'inc', epoch, 'app', '0', 'cur', '0-0 1')
end
redis.call('HSET', KEYS[1], 'epoch', epoch, 'owner', ARGV[1], 'online', '1', 'exp', ARGV[3])
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
return {epoch, h[2] or '', h[3] or '0', present and '1' or '0', redis.call('HGETALL', KEYS[1])}
`)

	// appendBody adds messages to one session's log when its incarnation matches, as many as its
	// queue bound allows. Used with KEYS k (session) and k+1 (log), ARGV from a (inc, max, n,
	// msgs, ends): msgs holds the n messages one after the other, ends the end offset of each in
	// msgs, 8 hex digits apiece (to keep the first ones only when the queue has less room).
	// Returns {status, accepted, owner, online}: status 0 gone, 1 appended (maybe fewer than n:
	// full). One stream field for all the messages keeps the script, the stream entry and the
	// reader's reply small whatever n is.
	appendBody = `
local function append(ks, kl, a)
  local inc, max, n = ARGV[a], tonumber(ARGV[a+1]), tonumber(ARGV[a+2])
  local h = redis.call('HMGET', ks, 'inc', 'app', 'cur', 'owner', 'online')
  if h[1] ~= inc then return {0, 0, '', '0'} end
  local app = tonumber(h[2])
  local cur = tonumber(string.match(h[3], ' (%d+)$'))
  local room = n
  if max > 0 then room = math.min(n, max - (app - cur + 1)) end
  if room > 0 then
    local msgs = ARGV[a+3]
    if room < n then msgs = string.sub(msgs, 1, tonumber(string.sub(ARGV[a+4], room*8-7, room*8), 16)) end
    redis.call('XADD', kl, '*', 's', string.format('%.0f', app + 1), 'b', msgs)
    redis.call('HSET', ks, 'app', string.format('%.0f', app + room))
    local ttl = redis.call('PTTL', ks)
    if ttl > 0 then redis.call('PEXPIRE', kl, ttl) end
  else
    room = 0
  end
  return {1, room, h[4] or '', h[5] or '0'}
end
`
	// KEYS: session, log. ARGV: inc, max, n, msgs, ends.
	appendScript = redis.NewScript(appendBody + `return append(KEYS[1], KEYS[2], 1)`)

	// A QoS 2 message from a persistent publisher: its receive state and its appends in one
	// script (one Redis node). KEYS: publisher's session, then (session, log) per target. ARGV:
	// packet id, message id, target count, the publisher's claim epoch, then per target inc,
	// max, 1, msg, end. Returns {-1} when the publisher's session was claimed since (fenced: a
	// request that reaches Redis late, after the client went elsewhere, must not append what
	// its resend already did, nor record an id the client has finished with), {0} when the
	// packet id is already recorded (a resend: nothing appended), else {1, result...}.
	q2AppendScript = redis.NewScript(appendBody + `
local e = redis.call('HGET', KEYS[1], 'epoch')
if e and e ~= ARGV[4] then return {-1} end
local f = 'q:' .. ARGV[1]
if redis.call('HEXISTS', KEYS[1], f) == 1 then return {0} end
if e then redis.call('HSET', KEYS[1], f, ARGV[2]) end
local out = {1}
local a = 5
for i = 1, tonumber(ARGV[3]) do
  local r = append(KEYS[2*i], KEYS[2*i+1], a)
  for _, v in ipairs(r) do out[#out+1] = v end
  a = a + 5
end
return out
`)

	// The owner's writes, fenced. KEYS: session, log. ARGV: epoch, then op/arg pairs. Returns 0
	// (fenced), 1 (done) or 2 (session ended).
	commitScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  local op, a = ARGV[i], ARGV[i+1]
  if op == 'cur' or op == 'dn' or op == 'rl' or op == 'state' or op == 'exp' then
    redis.call('HSET', KEYS[1], op, a)
  elseif op == 'trim' then
    redis.call('XTRIM', KEYS[2], 'MINID', a)
  elseif op == 'q2del' then
    redis.call('HDEL', KEYS[1], 'q:' .. a)
  elseif op == 'off' then
    redis.call('HSET', KEYS[1], 'online', '0')
    local ttl = tonumber(a)
    if ttl > 0 then
      redis.call('PEXPIRE', KEYS[1], ttl)
      redis.call('PEXPIRE', KEYS[2], ttl)
    end
  elseif op == 'on' then
    redis.call('HSET', KEYS[1], 'online', '1')
    redis.call('PERSIST', KEYS[1])
    redis.call('PERSIST', KEYS[2])
  elseif op == 'end' then
    redis.call('DEL', KEYS[1], KEYS[2])
    return 2
  end
end
return 1
`)

	// A replica is gone: its sessions whose clients were connected go offline, expiring after
	// their expiry ("exp", ms; -1 never) plus OfflineMargin. KEYS: session, log. ARGV: dead
	// replica, margin ms.
	orphanScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'owner', 'online', 'exp')
if h[1] ~= ARGV[1] or h[2] ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'online', '0')
local exp = tonumber(h[3] or '-1')
if exp >= 0 then
  redis.call('PEXPIRE', KEYS[1], exp + tonumber(ARGV[2]))
  redis.call('PEXPIRE', KEYS[2], exp + tonumber(ARGV[2]))
end
return 1
`)
)

// OfflineMargin is how much longer than its expiry interval an offline session's keys live in
// Redis: the owner ends the session itself at its expiry; the keys' own expiry is the backstop
// when the owner is gone.
const OfflineMargin = time.Minute

func (b *Bus) sessionKeys(id string) []string {
	return []string{b.names.Session(id), b.names.SessionLog(id)}
}

// ClaimSession makes this replica the owner of session id and returns what Redis holds of it.
// With clean, or when no session exists (or only a clean one, expiry 0), a new incarnation
// starts empty. expiry is the session expiry interval (negative: never; 0: a clean session). The previous owner, if
// any, is fenced from here on: its Commit calls fail with ErrFenced. The session is also added
// to this replica's set of sessions (for ReleaseOrphans).
func (b *Bus) ClaimSession(ctx context.Context, id string, clean bool, expiry time.Duration) (SessionClaim, error) {
	var sc SessionClaim
	cleanArg := "0"
	if clean {
		cleanArg = "1"
	}
	exp := int64(-1)
	if expiry >= 0 {
		exp = expiry.Milliseconds()
	}
	res, err := claimScript.Run(ctx, b.client, b.sessionKeys(id), b.opts.ReplicaID, cleanArg, exp).Slice()
	if err != nil {
		return sc, fmt.Errorf("%w: claim session: %w", ErrUnavailable, err)
	}
	if len(res) != 5 {
		return sc, fmt.Errorf("%w: claim session: %d results", ErrMalformed, len(res))
	}
	sc.Epoch, _ = strconv.ParseUint(asString(res[0]), 10, 64)
	sc.PrevOwner = asString(res[1])
	sc.PrevOnline = asString(res[2]) == "1"
	sc.Present = asString(res[3]) == "1"
	kv, _ := res[4].([]any)
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := asString(kv[i]), asString(kv[i+1])
		switch {
		case k == "inc":
			sc.Inc, _ = strconv.ParseUint(v, 10, 64)
		case k == "app":
			sc.Appended, _ = strconv.ParseUint(v, 10, 64)
		case k == "cur":
			if sc.Cursor, err = parseLogPos(v); err != nil {
				return sc, err
			}
		case k == "dn":
			sc.Done = parseSeqs(v)
		case k == "rl":
			sc.Released = parseSeqs(v)
		case k == "state":
			sc.State = []byte(v)
		case strings.HasPrefix(k, "q:"):
			pid, err1 := strconv.ParseUint(k[2:], 10, 16)
			mid, err2 := hex.DecodeString(v)
			if err1 == nil && err2 == nil && len(mid) == 16 {
				if sc.InQoS2 == nil {
					sc.InQoS2 = make(map[uint16]MessageID)
				}
				sc.InQoS2[uint16(pid)] = MessageID(mid)
			}
		}
	}
	if err := b.client.SAdd(ctx, b.names.ReplicaSessions(b.opts.ReplicaID), id).Err(); err != nil {
		b.log.Warn().Err(err).Str("client_id", id).Msg("bus: session not added to the replica's set")
	}
	return sc, nil
}

func asString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case int64:
		return strconv.FormatInt(s, 10)
	}
	return ""
}

func parseSeqs(s string) []uint64 {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	out := make([]uint64, 0, len(parts))
	for _, p := range parts {
		if n, err := strconv.ParseUint(p, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func formatSeqs(seqs []uint64) string {
	b := make([]byte, 0, len(seqs)*8)
	for i, s := range seqs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, s, 10)
	}
	return string(b)
}

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

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// loadScripts loads every session script into Redis (into every master of a cluster).
func (b *Bus) loadScripts(ctx context.Context) error {
	load := func(c redis.Scripter) error {
		for _, s := range []*redis.Script{claimScript, appendScript, q2AppendScript, commitScript, orphanScript} {
			if err := s.Load(ctx, c).Err(); err != nil {
				return fmt.Errorf("%w: loading scripts: %w", ErrUnavailable, err)
			}
		}
		return nil
	}
	c := b.pubc()
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return load(c) })
	}
	return load(c)
}

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

// ReleaseOrphans marks the sessions held by dead replica (its clients' connections died with it)
// offline, each expiring after its expiry interval plus OfflineMargin, and forgets the replica's
// set. Other replicas may run it at the same time: a session is changed only while it still
// names the dead replica as owner and online. It returns how many sessions it changed.
func (b *Bus) ReleaseOrphans(ctx context.Context, dead string) (int, error) {
	set := b.names.ReplicaSessions(dead)
	ids, err := b.client.SMembers(ctx, set).Result()
	if err != nil {
		return 0, fmt.Errorf("%w: orphan sessions: %w", ErrUnavailable, err)
	}
	n := 0
	for _, id := range ids {
		r, err := orphanScript.Run(ctx, b.client, b.sessionKeys(id), dead, OfflineMargin.Milliseconds()).Int()
		if err != nil {
			return n, fmt.Errorf("%w: orphan session: %w", ErrUnavailable, err)
		}
		n += r
	}
	if err := b.client.Del(ctx, set).Err(); err != nil {
		return n, fmt.Errorf("%w: orphan sessions: %w", ErrUnavailable, err)
	}
	return n, nil
}

// SessionOwner returns the replica Redis names as the owner of session id ("" if none) and
// whether its client is connected there.
func (b *Bus) SessionOwner(ctx context.Context, id string) (owner string, online bool, err error) {
	vals, err := b.client.HMGet(ctx, b.names.Session(id), "owner", "online").Result()
	if err != nil {
		return "", false, fmt.Errorf("%w: session owner: %w", ErrUnavailable, err)
	}
	owner, _ = vals[0].(string)
	on, _ := vals[1].(string)
	return owner, on == "1", nil
}

// SessionEpochs returns the current epoch of each session (0: it does not exist), in order.
func (b *Bus) SessionEpochs(ctx context.Context, ids []string) ([]uint64, error) {
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, b.names.Session(id), "epoch")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: session epochs: %w", ErrUnavailable, err)
	}
	out := make([]uint64, len(ids))
	for i, c := range cmds {
		out[i], _ = strconv.ParseUint(c.Val(), 10, 64)
	}
	return out, nil
}

// HoldSession adds id to this replica's set of sessions (ReleaseOrphans reads it).
func (b *Bus) HoldSession(ctx context.Context, id string) error {
	if err := b.client.SAdd(ctx, b.names.ReplicaSessions(b.opts.ReplicaID), id).Err(); err != nil {
		return fmt.Errorf("%w: hold session: %w", ErrUnavailable, err)
	}
	return nil
}

// ForgetSession removes id from this replica's set of sessions (it went offline or ended).
func (b *Bus) ForgetSession(ctx context.Context, id string) error {
	if err := b.client.SRem(ctx, b.names.ReplicaSessions(b.opts.ReplicaID), id).Err(); err != nil {
		return fmt.Errorf("%w: forget session: %w", ErrUnavailable, err)
	}
	return nil
}
