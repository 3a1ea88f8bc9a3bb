package bus

import (
	"context"
	"fmt"
)

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
