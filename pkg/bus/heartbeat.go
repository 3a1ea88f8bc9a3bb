package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Kind says what sent a heartbeat.
type Kind string

// Kinds of MCloudTT processes.
const (
	KindBroker  Kind = "broker"
	KindAdapter Kind = "adapter"
	KindGateway Kind = "gateway"
)

// Heartbeat is what every process publishes once a second on Names.Heartbeats. It is JSON:
// small, infrequent, and read by other services (the health gateway shows it as is).
type Heartbeat struct {
	ReplicaID string    `json:"replica_id"`
	Kind      Kind      `json:"kind"`
	Version   string    `json:"version"`
	Address   string    `json:"address,omitempty"` // where the process can be reached (pod IP:port)
	Started   time.Time `json:"started"`
	Sent      time.Time `json:"sent"`
	// Uptime is Sent - Started unless set.
	Uptime      time.Duration `json:"uptime_ns"`
	Clients     int           `json:"clients"`
	MsgsInRate  float64       `json:"msgs_in_per_s"`  // messages received from clients per second
	MsgsOutRate float64       `json:"msgs_out_per_s"` // messages delivered to clients per second
	// Redis is the sender's bus status.
	Redis Status `json:"redis"`
	// Leaving says the sender is shutting down on purpose (a drain, a scale-down): forget it
	// now rather than report it missing.
	Leaving bool `json:"leaving,omitempty"`
	// ExportLag is, for an adapter, how many export entries are waiting: not yet delivered to
	// its consumer group plus delivered but not acknowledged.
	ExportLag int64 `json:"export_lag,omitempty"`
	// ExportLagSeconds is, for an adapter, the age of the oldest export entry not yet written
	// to BigQuery (0 when it has caught up).
	ExportLagSeconds float64        `json:"export_lag_seconds,omitempty"`
	Extra            map[string]any `json:"extra,omitempty"`
}

// DecodeHeartbeat parses a heartbeat payload.
func DecodeHeartbeat(p []byte) (Heartbeat, error) {
	var hb Heartbeat
	if err := json.Unmarshal(p, &hb); err != nil {
		return Heartbeat{}, fmt.Errorf("bus: heartbeat: %w", err)
	}
	if hb.ReplicaID == "" {
		return Heartbeat{}, fmt.Errorf("bus: heartbeat without replica_id")
	}
	return hb, nil
}

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
