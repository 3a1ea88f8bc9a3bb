// Package feed is the adapter's side of the Redis export stream (bus.Names.Export): a consumer
// group shared by every adapter replica, reading new entries and the replica's own pending ones,
// claiming entries a dead replica left pending (XAUTOCLAIM), recording the exactly-once plans of
// entries (plans.go), acknowledging entries once BigQuery holds their rows, parking refused
// entries in the dead-letter stream, and measuring the lag.
package feed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

// Options configure a Feed.
type Options struct {
	Addrs []string // several: Redis Cluster
	// Conn dials Redis (TCP or TLS) and supplies the credentials; nil: plain TCP without AUTH.
	Conn     *redisconn.Connector
	Group    string
	Consumer string // this replica's id
	// DeadLetterMaxLen caps the dead-letter stream (MAXLEN ~).
	DeadLetterMaxLen int64
	// Timeouts of the Redis client.
	DialTimeout, ReadTimeout time.Duration
}

// Feed reads the export stream for one consumer. Safe for concurrent use.
type Feed struct {
	o                   Options
	c                   redis.UniversalClient
	stream, dead, plans string
}

// Entry is one stream entry.
type Entry struct {
	ID string
	// Data is the entry's batch: messages (field bus.ExportField; bus.DecodeExportEntry) or, with
	// Presence set, a presence batch (field bus.PresenceField); nil when the entry has neither.
	Data     []byte
	Presence bool
	// Fields holds the entry's fields when it has no batch, for the dead-letter stream.
	Fields map[string]any
}

// Field returns the stream field e's batch travels in.
func (e *Entry) Field() string {
	if e.Presence {
		return bus.PresenceField
	}
	return bus.ExportField
}

// entryOf makes an Entry of one stream entry's fields: one batch field, or anything else kept
// as it is for the dead-letter stream.
func entryOf(id string, values map[string]any) Entry {
	e := Entry{ID: id}
	if len(values) == 1 {
		for k, v := range values {
			if s, ok := v.(string); ok && (k == bus.ExportField || k == bus.PresenceField) {
				e.Data, e.Presence = []byte(s), k == bus.PresenceField
				return e
			}
		}
	}
	e.Fields = values
	return e
}

// New makes the Redis client; it connects lazily.
func New(o Options) *Feed {
	if o.DialTimeout == 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 5 * time.Second
	}
	names := bus.NewNames("")
	if o.Conn == nil {
		o.Conn, _ = redisconn.New(redisconn.Options{DialTimeout: o.DialTimeout}) // no files: no error
	}
	// No retries underneath: a lost reply to XREADGROUP > must not be hidden (its entries are
	// then pending for this consumer and come back through Claim), and every caller loops.
	uo := &redis.UniversalOptions{
		Addrs: o.Addrs, IsClusterMode: len(o.Addrs) > 1,
		ClientName:  "mcloudtt-" + o.Consumer,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.ReadTimeout,
		MaxRetries: -1, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	o.Conn.UniversalClient(uo)
	return &Feed{o: o, c: redis.NewUniversalClient(uo), stream: names.Export(), dead: names.ExportDeadLetter(), plans: names.ExportPlans()}
}

// Close closes the client.
func (f *Feed) Close() error { return f.c.Close() }

// Stream and DeadLetterStream return the stream names.
func (f *Feed) Stream() string           { return f.stream }
func (f *Feed) DeadLetterStream() string { return f.dead }

// Ping checks that Redis answers; an error from the security set-up (wrong password, untrusted
// certificate, ...) says so first (redisconn.Cause).
func (f *Feed) Ping(ctx context.Context) error { return f.o.Conn.Explain(f.c.Ping(ctx).Err()) }

// EnsureGroup creates the consumer group (and the stream) if missing. A new group starts at the
// beginning of the stream, so whatever brokers wrote before the first adapter ran is exported.
func (f *Feed) EnsureGroup(ctx context.Context) error {
	err := f.c.XGroupCreateMkStream(ctx, f.stream, f.o.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("feed: creating group %s: %w", f.o.Group, f.o.Conn.Explain(err))
	}
	return nil
}

func entries(msgs []redis.XMessage) []Entry {
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, entryOf(m.ID, m.Values))
	}
	return out
}

// ReadOwn returns up to count entries pending for this consumer with ids above after ("0" for
// all): what this replica read before a restart and did not acknowledge.
func (f *Feed) ReadOwn(ctx context.Context, after string, count int) ([]Entry, error) {
	res, err := f.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: f.o.Group, Consumer: f.o.Consumer,
		Streams: []string{f.stream, after}, Count: int64(count)}).Result()
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return entries(res[0].Messages), nil
}

// ReadNew waits up to block for entries never delivered to the group and returns up to count.
func (f *Feed) ReadNew(ctx context.Context, count int, block time.Duration) ([]Entry, error) {
	if block < time.Millisecond {
		block = time.Millisecond
	}
	res, err := f.c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: f.o.Group, Consumer: f.o.Consumer,
		Streams: []string{f.stream, ">"}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, nil
	}
	return entries(res[0].Messages), nil
}

// Claim takes over up to count entries that have been pending (for any consumer) for at least
// minIdle, scanning from start ("0-0" first). It returns them, where to continue ("0-0": the
// scan is complete), and the ids of pending entries the stream no longer holds (trimmed by
// MAXLEN before anyone wrote them).
func (f *Feed) Claim(ctx context.Context, minIdle time.Duration, start string, count int) ([]Entry, string, []string, error) {
	// go-redis' XAutoClaim drops the third element (deleted ids), so the reply is read raw.
	res, err := f.c.Do(ctx, "XAUTOCLAIM", f.stream, f.o.Group, f.o.Consumer,
		strconv.FormatInt(minIdle.Milliseconds(), 10), start, "COUNT", strconv.Itoa(count)).Slice()
	if err != nil {
		return nil, "", nil, err
	}
	if len(res) < 2 {
		return nil, "", nil, fmt.Errorf("feed: XAUTOCLAIM reply of %d elements", len(res))
	}
	next, _ := res[0].(string)
	var out []Entry
	list, _ := res[1].([]any)
	for _, x := range list {
		pair, _ := x.([]any)
		if len(pair) != 2 {
			continue
		}
		id, _ := pair[0].(string)
		kv, _ := pair[1].([]any)
		values := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			if k, ok := kv[i].(string); ok {
				values[k] = kv[i+1]
			}
		}
		out = append(out, entryOf(id, values))
	}
	var deleted []string
	if len(res) > 2 {
		d, _ := res[2].([]any)
		for _, x := range d {
			if s, ok := x.(string); ok {
				deleted = append(deleted, s)
			}
		}
	}
	return out, next, deleted, nil
}

// Ack acknowledges ids.
func (f *Feed) Ack(ctx context.Context, ids []string) error {
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		if err := f.c.XAck(ctx, f.stream, f.o.Group, ids[:n]...).Err(); err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// keepScript returns the ids (ARGV[3..]) still pending for consumer ARGV[2] in group ARGV[1],
// and resets their idle time, so that no other replica claims them during the next attempt.
var keepScript = redis.NewScript(`
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #p > 0 then kept[#kept + 1] = ARGV[i] end
end
local i = 1
while i <= #kept do
  local j = math.min(i + 499, #kept)
  local args = {KEYS[1], ARGV[1], ARGV[2], 0}
  for k = i, j do args[#args + 1] = kept[k] end
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
  i = j + 1
end
return kept
`)

// Keep returns which of ids are still pending for this consumer (another replica may have
// claimed some) and resets their idle time.
func (f *Feed) Keep(ctx context.Context, ids []string) (map[string]bool, error) {
	kept := make(map[string]bool, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 2000)
		args := make([]any, 0, n+2)
		args = append(args, f.o.Group, f.o.Consumer)
		for _, id := range ids[:n] {
			args = append(args, id)
		}
		res, err := keepScript.Run(ctx, f.c, []string{f.stream}, args...).StringSlice()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for _, id := range res {
			kept[id] = true
		}
		ids = ids[n:]
	}
	return kept, nil
}

// releaseScript removes from the stream (KEYS[1]) the entries every consumer group is done with:
// those before the oldest entry any group still needs — its oldest pending entry, or when none
// is pending the last one delivered to it (kept: MINID keeps ids at or above it), and every
// entry after that. Groups are read and the stream trimmed in one script, so a group created
// meanwhile is seen. Without a group nothing is removed (MAXLEN bounds the stream then). The
// trim is approximate (~): Redis removes whole nodes only, which is cheap, and never an entry at
// or above the minimum. It returns the number of entries removed.
var releaseScript = redis.NewScript(`
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local minid, minms, minseq
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local id = f['last-delivered-id']
  if tonumber(f['pending']) > 0 then
    id = redis.call('XPENDING', KEYS[1], f['name'])[2]
  end
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  ms, seq = tonumber(ms), tonumber(seq)
  if minid == nil or ms < minms or (ms == minms and seq < minseq) then
    minid, minms, minseq = id, ms, seq
  end
end
if minms == 0 and minseq == 0 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
`)

// Release removes the entries every consumer group of the stream has acknowledged (and that no
// group still has to read), so the stream holds what the adapters have yet to write rather than
// the last BROKER_EXPORT_MAXLEN entries, and Redis reuses their memory. It returns how many
// entries it removed.
func (f *Feed) Release(ctx context.Context) (int64, error) {
	return releaseScript.Run(ctx, f.c, []string{f.stream}).Int64()
}

// Dead is an entry for the dead-letter stream.
type Dead struct {
	Entry Entry
	Err   string
}

// DeadLetter appends items to the dead-letter stream, each with the original entry id, the
// envelope (or the original fields), the error and this consumer's id.
func (f *Feed) DeadLetter(ctx context.Context, items []Dead) error {
	pipe := f.c.Pipeline()
	for _, d := range items {
		vals := []any{"entry", d.Entry.ID, "error", d.Err, "consumer", f.o.Consumer}
		if d.Entry.Data != nil {
			vals = append(vals, d.Entry.Field(), d.Entry.Data)
		}
		for k, v := range d.Entry.Fields {
			vals = append(vals, "field:"+k, v)
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: f.dead, MaxLen: f.o.DeadLetterMaxLen, Approx: true, Values: vals})
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return c.Err()
		}
	}
	return nil
}

// Lag returns how many entries wait for the group (never delivered plus delivered but not
// acknowledged) and when the oldest of them was added (zero time when none waits).
func (f *Feed) Lag(ctx context.Context) (int64, time.Time, error) {
	groups, err := f.c.XInfoGroups(ctx, f.stream).Result()
	if err != nil {
		return 0, time.Time{}, err
	}
	for _, g := range groups {
		if g.Name != f.o.Group {
			continue
		}
		lag := g.Lag
		if lag < 0 { // unknown to Redis (entries deleted in between): count from the last delivered
			lag, _ = f.c.XLen(ctx, f.stream).Result()
		}
		var oldest time.Time
		if g.Pending > 0 {
			p, err := f.c.XPending(ctx, f.stream, f.o.Group).Result()
			if err != nil {
				return 0, time.Time{}, err
			}
			oldest = idTime(p.Lower)
		} else if lag > 0 {
			msgs, err := f.c.XRangeN(ctx, f.stream, "("+g.LastDeliveredID, "+", 1).Result()
			if err != nil {
				return 0, time.Time{}, err
			}
			if len(msgs) > 0 {
				oldest = idTime(msgs[0].ID)
			}
		}
		return lag + g.Pending, oldest, nil
	}
	return 0, time.Time{}, fmt.Errorf("feed: group %s not found", f.o.Group)
}

// idTime is the time Redis added a stream entry: the milliseconds part of its id.
func idTime(id string) time.Time {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}
