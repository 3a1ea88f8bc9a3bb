package bus

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// The cluster route table: which topic filters each replica has local subscribers for.
//
// Each replica's filters are a Redis SET (Names.Routes) that only that replica writes; a
// subscription that is the replica's first for a filter calls AddRoutes, its last one going away
// calls RemoveRoutes (the broker counts local references; the set holds each filter once). Every
// change is then announced on Names.RouteChanges, so the other replicas update their cached
// copy from the notice alone, without reading the set. A replica that (re)connects, or that may
// have missed notices (OnReconnect), reads the sets with Replicas and Routes.
//
// A notice is sent after the set is written, never before, so a replica that reads the sets
// after seeing a notice finds the change. A notice can be lost (the writer dies in between, or
// a receiver is reconnecting); that is what the resync on OnReconnect is for.

func (b *Bus) announce(ctx context.Context, rc RouteChange) error {
	p := AppendRouteChange(nil, rc)
	var err error
	if b.opts.Cluster {
		err = b.pubc().SPublish(ctx, b.names.RouteChanges(), p).Err()
	} else {
		err = b.pubc().Publish(ctx, b.names.RouteChanges(), p).Err()
	}
	if err != nil {
		return fmt.Errorf("%w: route change notice: %w", ErrUnavailable, err)
	}
	return nil
}

// AddRoutes adds filters to replica's route table and announces them.
func (b *Bus) AddRoutes(ctx context.Context, replica string, filters ...string) error {
	if len(filters) == 0 {
		return nil
	}
	if err := ValidateReplicaID(replica); err != nil {
		return err
	}
	if err := b.pubc().SAdd(ctx, b.names.Routes(replica), toAny(filters)...).Err(); err != nil {
		return fmt.Errorf("%w: add routes: %w", ErrUnavailable, err)
	}
	return b.announce(ctx, RouteChange{Op: RouteAdd, Replica: replica, Filters: filters})
}

// RemoveRoutes removes filters from replica's route table and announces it.
func (b *Bus) RemoveRoutes(ctx context.Context, replica string, filters ...string) error {
	if len(filters) == 0 {
		return nil
	}
	if err := ValidateReplicaID(replica); err != nil {
		return err
	}
	if err := b.pubc().SRem(ctx, b.names.Routes(replica), toAny(filters)...).Err(); err != nil {
		return fmt.Errorf("%w: remove routes: %w", ErrUnavailable, err)
	}
	return b.announce(ctx, RouteChange{Op: RouteRemove, Replica: replica, Filters: filters})
}

// DropReplica deletes replica's route table and its entry in the replica set, and announces it:
// for a replica that shut down, or whose heartbeats stopped.
func (b *Bus) DropReplica(ctx context.Context, replica string) error {
	if err := ValidateReplicaID(replica); err != nil {
		return err
	}
	if err := b.pubc().Del(ctx, b.names.Routes(replica)).Err(); err != nil {
		return fmt.Errorf("%w: drop routes: %w", ErrUnavailable, err)
	}
	if err := b.pubc().ZRem(ctx, b.names.Replicas(), replica).Err(); err != nil {
		return fmt.Errorf("%w: drop replica: %w", ErrUnavailable, err)
	}
	return b.announce(ctx, RouteChange{Op: RouteDrop, Replica: replica})
}

// Routes returns replica's filters, sorted.
func (b *Bus) Routes(ctx context.Context, replica string) ([]string, error) {
	fs, err := b.pubc().SMembers(ctx, b.names.Routes(replica)).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: routes: %w", ErrUnavailable, err)
	}
	slices.Sort(fs)
	return fs, nil
}

// ReplicaSeen is one entry of the replica set.
type ReplicaSeen struct {
	ID       string
	LastSeen time.Time // time of its last heartbeat
}

// Replicas returns the replica set (brokers that sent a heartbeat and were not dropped), the
// least recently seen first. Callers decide how old is dead (a few heartbeat intervals).
func (b *Bus) Replicas(ctx context.Context) ([]ReplicaSeen, error) {
	zs, err := b.pubc().ZRangeWithScores(ctx, b.names.Replicas(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("%w: replicas: %w", ErrUnavailable, err)
	}
	out := make([]ReplicaSeen, 0, len(zs))
	for _, z := range zs {
		id, _ := z.Member.(string)
		out = append(out, ReplicaSeen{ID: id, LastSeen: time.UnixMilli(int64(z.Score))})
	}
	return out, nil
}

// TouchReplica records that replica was seen at t (PublishHeartbeat does this for brokers).
func (b *Bus) TouchReplica(ctx context.Context, replica string, t time.Time) error {
	err := b.pubc().ZAdd(ctx, b.names.Replicas(), redis.Z{Score: float64(t.UnixMilli()), Member: replica}).Err()
	if err != nil {
		return fmt.Errorf("%w: touch replica: %w", ErrUnavailable, err)
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
