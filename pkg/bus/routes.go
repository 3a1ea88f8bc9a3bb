package bus

import (
	"context"
	"encoding/binary"
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

// RouteOp is what a RouteChange does.
type RouteOp byte

// Route operations.
const (
	RouteAdd    RouteOp = 1 // Filters were added to Replica's table
	RouteRemove RouteOp = 2 // Filters were removed from Replica's table
	RouteDrop   RouteOp = 3 // Replica is gone: forget its whole table (Filters is empty)
)

func (op RouteOp) String() string {
	switch op {
	case RouteAdd:
		return "add"
	case RouteRemove:
		return "remove"
	case RouteDrop:
		return "drop"
	}
	return fmt.Sprintf("RouteOp(%d)", byte(op))
}

// RouteChange is one announced change of a route table.
type RouteChange struct {
	Op      RouteOp
	Replica string
	Filters []string
}

// routeChangeVersion starts every encoded RouteChange.
const routeChangeVersion = 1

// AppendRouteChange appends rc's compact binary form: version byte, op byte, replica, filter
// count, filters; strings as uvarint length + bytes.
func AppendRouteChange(dst []byte, rc RouteChange) []byte {
	dst = append(dst, routeChangeVersion, byte(rc.Op))
	dst = appendStr(dst, rc.Replica)
	dst = binary.AppendUvarint(dst, uint64(len(rc.Filters)))
	for _, f := range rc.Filters {
		dst = appendStr(dst, f)
	}
	return dst
}

// DecodeRouteChange parses a notice. The strings are copied (notices are small and rare, and
// receivers keep the filters). It never panics and allocates at most 16 bytes of slice per input
// byte.
func DecodeRouteChange(p []byte) (RouteChange, error) {
	var rc RouteChange
	if len(p) < 2 || p[0] != routeChangeVersion {
		return rc, fmt.Errorf("%w: route change: bad header", ErrMalformed)
	}
	rc.Op = RouteOp(p[1])
	if rc.Op < RouteAdd || rc.Op > RouteDrop {
		return rc, fmt.Errorf("%w: route change: unknown op %d", ErrMalformed, p[1])
	}
	d := decoder{b: p, off: 2}
	rc.Replica = string(d.bytes("replica"))
	n := d.uvarint("filter count")
	if d.err == nil && n > uint64(len(p)-d.off) {
		d.fail("filter count exceeds the notice")
	}
	if d.err == nil && n > 0 {
		rc.Filters = make([]string, n)
		for i := range rc.Filters {
			rc.Filters[i] = string(d.bytes("filter"))
		}
	}
	if d.err == nil && d.off != len(p) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return RouteChange{}, d.err
	}
	return rc, nil
}

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
