package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// RunHeartbeats publishes the heartbeat that next makes, every interval, until ctx ends. now is the
// tick's time. A heartbeat that cannot be sent is logged at debug level; the next tick tries again.
func (b *Bus) RunHeartbeats(ctx context.Context, interval time.Duration, next func(ctx context.Context, now time.Time) Heartbeat) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := b.PublishHeartbeat(ctx, next(ctx, now)); err != nil {
				b.log.Debug().Err(err).Msg("heartbeat not sent")
			}
		}
	}
}

// PublishHeartbeat publishes hb on the heartbeat channel, filling in what is missing:
// ReplicaID (the bus's), Sent (now), Uptime (from Started) and Redis (the bus's Status). A
// broker's heartbeat (Kind "broker" or empty) also refreshes its entry in the Names.Replicas set.
// It waits for Redis, bounded by ctx and ReadTimeout.
func (b *Bus) PublishHeartbeat(ctx context.Context, hb Heartbeat) error {
	if hb.ReplicaID == "" {
		hb.ReplicaID = b.opts.ReplicaID
	}
	if hb.Sent.IsZero() {
		hb.Sent = time.Now()
	}
	if hb.Uptime == 0 && !hb.Started.IsZero() {
		hb.Uptime = hb.Sent.Sub(hb.Started)
	}
	if hb.Redis == (Status{}) {
		hb.Redis = b.Status()
	}
	p, err := json.Marshal(hb)
	if err != nil {
		return fmt.Errorf("bus: heartbeat: %w", err)
	}
	var pubErr error
	if b.opts.Cluster {
		pubErr = b.pubc().SPublish(ctx, b.names.Heartbeats(), p).Err()
	} else {
		pubErr = b.pubc().Publish(ctx, b.names.Heartbeats(), p).Err()
	}
	if pubErr != nil {
		return fmt.Errorf("%w: heartbeat: %w", ErrUnavailable, pubErr)
	}
	if hb.Kind == KindBroker || hb.Kind == "" {
		return b.TouchReplica(ctx, hb.ReplicaID, hb.Sent)
	}
	return nil
}
