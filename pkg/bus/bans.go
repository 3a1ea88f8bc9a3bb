package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// The operators' bans (wire.Ban) live in Redis: the HASH Names.Bans (ban key -> the ban as JSON)
// and the SORTED SET Names.BanExpiry (ban key scored by its end in Unix milliseconds), in one slot.
// Every read removes the bans that have ended, and both keys expire with the last ban, so an
// ended ban leaves Redis by itself. The replicas keep a copy in memory (checked at every
// CONNECT) and read it again when told and every few seconds.

var (
	// KEYS: bans, expiry. ARGV: key, JSON, until ms. Adds or replaces one ban; both keys live
	// until the last ban ends.
	banAddScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1
`)
	// KEYS: bans, expiry. ARGV: key. Returns 1 when the ban was there.
	banRemoveScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
`)
	// KEYS: bans, expiry. Removes the ended bans, returns HGETALL of the others.
	banListScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ended = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, k in ipairs(ended) do
  redis.call('HDEL', KEYS[1], k)
  redis.call('ZREM', KEYS[2], k)
end
return redis.call('HGETALL', KEYS[1])
`)
)

// AddBan stores ban (checked with Check; Until in the future), replacing one of the same kind
// and value.
func (b *Bus) AddBan(ctx context.Context, ban wire.Ban) error {
	if err := ban.Check(); err != nil {
		return err
	}
	if !ban.Until.After(time.Now()) {
		return fmt.Errorf("ban: until %s is not in the future", ban.Until.Format(time.RFC3339))
	}
	js, err := json.Marshal(&ban)
	if err != nil {
		return err
	}
	n := b.names
	err = banAddScript.Run(ctx, b.client, []string{n.Bans(), n.BanExpiry()},
		ban.Key(), js, strconv.FormatInt(ban.Until.UnixMilli(), 10)).Err()
	if err != nil {
		return fmt.Errorf("%w: bans: %w", ErrUnavailable, err)
	}
	return nil
}

// RemoveBan lifts the ban of kind and value; found says whether there was one.
func (b *Bus) RemoveBan(ctx context.Context, kind, value string) (found bool, err error) {
	ban := wire.Ban{Kind: kind, Value: value}
	if err := ban.Check(); err != nil {
		return false, err
	}
	n := b.names
	c, err := banRemoveScript.Run(ctx, b.client, []string{n.Bans(), n.BanExpiry()}, ban.Key()).Int()
	if err != nil {
		return false, fmt.Errorf("%w: bans: %w", ErrUnavailable, err)
	}
	return c == 1, nil
}

// Bans returns the bans in force, by kind and value; ended ones are removed from Redis on the way.
// An entry that does not decode is skipped.
func (b *Bus) Bans(ctx context.Context) ([]wire.Ban, error) {
	n := b.names
	kv, err := banListScript.Run(ctx, b.client, []string{n.Bans(), n.BanExpiry()}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("%w: bans: %w", ErrUnavailable, err)
	}
	now := time.Now()
	out := make([]wire.Ban, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		var ban wire.Ban
		if err := json.Unmarshal([]byte(kv[i+1]), &ban); err != nil || ban.Check() != nil {
			b.log.Warn().Str("ban", kv[i]).Msg("bus: undecodable ban skipped")
			continue
		}
		if ban.Until.After(now) {
			out = append(out, ban)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}
