package bus

import (
	"context"
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
//
// The Lua scripts are in scripts.go, the owner's and publishers' writes in sessionwrites.go, log
// reads in logs.go, and the release of a dead replica's sessions in orphans.go.

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
	res, err := b.claim(ctx, id, cleanArg, exp)
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
	return sc, nil
}

// claim runs the claim script and adds id to this replica's set of sessions in one round trip
// (a CONNECT waits for it: in a reconnect storm every round trip counts). The set may get the id
// even when the claim fails; ReleaseOrphans then finds a session this replica does not own
// online and leaves it alone. The script is loaded again when Redis lost it (NOSCRIPT: it did
// not run).
func (b *Bus) claim(ctx context.Context, id, cleanArg string, exp int64) ([]any, error) {
	keys := b.sessionKeys(id)
	var claim *redis.Cmd
	var hold *redis.IntCmd
	_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error { // errors are per command
		claim = claimScript.EvalSha(ctx, p, keys, b.opts.ReplicaID, cleanArg, exp)
		hold = p.SAdd(ctx, b.names.ReplicaSessions(b.opts.ReplicaID), id)
		return nil
	})
	if err := hold.Err(); err != nil {
		b.log.Warn().Err(err).Str("client_id", id).Msg("bus: session not added to the replica's set")
	}
	switch err := claim.Err(); {
	case isNoScript(err):
		return claimScript.Run(ctx, b.client, keys, b.opts.ReplicaID, cleanArg, exp).Slice()
	case err != nil:
		return nil, err
	}
	return claim.Slice()
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
