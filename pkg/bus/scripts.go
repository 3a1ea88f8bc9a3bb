package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The session scripts (the keys are described in sessions.go). Each touches the keys of one
// session only (one slot on a Redis Cluster).
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
