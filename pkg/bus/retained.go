package bus

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Retained messages in Redis: the HASH Names.Retained, field = topic name, value = a one-message
// envelope batch (AppendMessage). Every replica keeps a full copy in memory and writes changes
// here; a replica that (re)connects reads the hash with ScanRetained.

// RetainedWrite sets a topic's retained message (Value, a one-message batch) or, with a nil
// Value, clears it.
type RetainedWrite struct {
	Topic string
	Value []byte
}

// WriteRetained applies ws in one pipeline. Each write is idempotent, so a retry is harmless.
func (b *Bus) WriteRetained(ctx context.Context, ws []RetainedWrite) error {
	key := b.names.Retained()
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, w := range ws {
			if w.Value == nil {
				p.HDel(ctx, key, w.Topic)
			} else {
				p.HSet(ctx, key, w.Topic, w.Value)
			}
		}
		return nil
	})
	if err != nil {
		if isRedisError(err) {
			return fmt.Errorf("bus: retained messages refused: %w", err)
		}
		return fmt.Errorf("%w: retained messages: %w", ErrUnavailable, err)
	}
	return nil
}

// ScanRetained calls fn with every retained message in Redis, a page at a time.
func (b *Bus) ScanRetained(ctx context.Context, fn func(topic string, value []byte)) error {
	key := b.names.Retained()
	var cursor uint64
	for {
		kv, next, err := b.client.HScan(ctx, key, cursor, "*", 1000).Result()
		if err != nil {
			return fmt.Errorf("%w: retained messages: %w", ErrUnavailable, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			fn(kv[i], []byte(kv[i+1]))
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
