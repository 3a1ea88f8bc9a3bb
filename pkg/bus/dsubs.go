package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// The index of persistent subscriptions (Names.DurableSubs): client id -> the QoS 1/2
// subscriptions of its persistent session, whichever replica holds it. A replica that accepts a
// PUBLISH looks it up (in its cached copy) to append the message to the log of every persistent
// session it matches, before acknowledging it. Only non-shared subscriptions with QoS 1 or 2 are
// indexed: QoS 0 deliveries and shared subscriptions keep the direct path between replicas.
//
// A value is "<epoch> <binary>": the epoch of the claim that wrote it, so that a replica that
// lost the session cannot overwrite the entry of the claim that followed (SetDurableSubs refuses
// an older epoch), then the subscriptions (EncodeDurableSubs).

var (
	// KEYS: index. ARGV: client, epoch, value ("" deletes). Returns 0 when a newer claim wrote
	// the entry, 1 when written, 2 when there was nothing to delete.
	dsubsSetScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local e = tonumber(string.match(old, '^(%d+) '))
  if e and e > tonumber(ARGV[2]) then return 0 end
end
if ARGV[3] == '' then
  if not old then return 2 end
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
`)
	// KEYS: index. ARGV: client, value as read. Deletes the entry if it is still that value.
	dsubsDelIfScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
return 0
`)
)

// SetDurableSubs writes client's entry as the claim epoch (an empty ds.Subs deletes it) and
// announces it. It returns the notice's sequence number (compare with DurableSubsChange.Seq of
// notices from this replica to know the others have it), and written = false when a newer claim
// already wrote the entry (nothing announced).
func (b *Bus) SetDurableSubs(ctx context.Context, client string, epoch uint64, ds DurableSubs) (seq uint64, written bool, err error) {
	val := ""
	var subs *DurableSubs
	if len(ds.Subs) > 0 {
		val = string(EncodeDurableSubs(nil, ds))
		subs = &ds
	}
	n, err := dsubsSetScript.Run(ctx, b.client, []string{b.names.DurableSubs()}, client, strconv.FormatUint(epoch, 10), val).Int()
	if err != nil {
		return 0, false, fmt.Errorf("%w: durable subscriptions: %w", ErrUnavailable, err)
	}
	if n == 0 {
		return 0, false, nil
	}
	if n == 2 {
		return 0, true, nil // nothing was there: nothing to announce
	}
	seq = b.dsubsSeq.Add(1)
	return seq, true, b.announceDurableSubs(ctx, DurableSubsChange{Client: client, Subs: subs, Origin: b.opts.ReplicaID, Seq: seq})
}

func (b *Bus) announceDurableSubs(ctx context.Context, c DurableSubsChange) error {
	p := wire.AppendDurableSubsChange(nil, c)
	var err error
	if b.opts.Cluster {
		err = b.pubc().SPublish(ctx, b.names.DurableSubsChanges(), p).Err()
	} else {
		err = b.pubc().Publish(ctx, b.names.DurableSubsChanges(), p).Err()
	}
	if err != nil {
		return fmt.Errorf("%w: durable subscriptions notice: %w", ErrUnavailable, err)
	}
	return nil
}

// ScanDurableSubs calls fn with every entry of the index (in pages, so a large index does not
// block Redis).
func (b *Bus) ScanDurableSubs(ctx context.Context, fn func(client string, ds DurableSubs)) error {
	key := b.names.DurableSubs()
	var cursor uint64
	for {
		kv, next, err := b.client.HScan(ctx, key, cursor, "*", 1000).Result()
		if err != nil {
			return fmt.Errorf("%w: durable subscriptions: %w", ErrUnavailable, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			ds, err := decodeDurableValue(kv[i+1])
			if err != nil {
				b.log.Warn().Err(err).Str("client_id", kv[i]).Msg("bus: undecodable durable subscriptions entry skipped")
				continue
			}
			fn(kv[i], ds)
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func decodeDurableValue(v string) (DurableSubs, error) {
	_, bin, ok := strings.Cut(v, " ")
	if !ok {
		return DurableSubs{}, fmt.Errorf("%w: durable subscriptions entry without epoch", ErrMalformed)
	}
	return DecodeDurableSubs([]byte(bin))
}

// SweepDurableSubs deletes (and announces) the entries whose session no longer exists in Redis
// (it expired there, its owner gone). Any replica may run it; it returns how many it deleted.
func (b *Bus) SweepDurableSubs(ctx context.Context) (int, error) {
	key := b.names.DurableSubs()
	var cursor uint64
	removed := 0
	for {
		kv, next, err := b.client.HScan(ctx, key, cursor, "*", 500).Result()
		if err != nil {
			return removed, fmt.Errorf("%w: sweep: %w", ErrUnavailable, err)
		}
		exists := make([]*redis.IntCmd, 0, len(kv)/2)
		_, err = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i+1 < len(kv); i += 2 {
				exists = append(exists, p.Exists(ctx, b.names.Session(kv[i])))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return removed, fmt.Errorf("%w: sweep: %w", ErrUnavailable, err)
		}
		for i, e := range exists {
			if e.Val() != 0 {
				continue
			}
			client, val := kv[2*i], kv[2*i+1]
			n, err := dsubsDelIfScript.Run(ctx, b.client, []string{key}, client, val).Int()
			if err != nil {
				return removed, fmt.Errorf("%w: sweep: %w", ErrUnavailable, err)
			}
			if n == 1 {
				removed++
				_ = b.announceDurableSubs(ctx, DurableSubsChange{Client: client, Origin: b.opts.ReplicaID, Seq: b.dsubsSeq.Add(1)})
			}
		}
		if cursor = next; cursor == 0 {
			return removed, nil
		}
	}
}

func (b *Bus) onDurableSubs(p []byte) {
	c, err := DecodeDurableSubsChange(p)
	if err != nil {
		b.log.Warn().Err(err).Msg("bus: undecodable durable subscriptions notice ignored")
		return
	}
	b.opts.OnDurableSubs(c)
}
