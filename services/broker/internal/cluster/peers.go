package cluster

import (
	"context"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

func (c *Cluster) onHeartbeat(hb bus.Heartbeat) {
	if hb.Kind != bus.KindBroker && hb.Kind != "" {
		return
	}
	c.mu.Lock()
	if hb.ReplicaID == c.self {
		c.selfSeen = time.Now()
	} else {
		c.peers[hb.ReplicaID] = time.Now()
	}
	c.mu.Unlock()
}

// peerLoop forgets replicas whose heartbeats stopped: their routes leave the cache and Redis,
// and their persistent sessions whose clients were connected go offline (and start expiring).
// It does so only while this replica hears its own heartbeats, so a replica with a broken
// subscription does not declare everyone else dead.
func (c *Cluster) peerLoop() {
	t := time.NewTicker(c.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.mu.Lock()
			var dead []string
			if now.Sub(c.selfSeen) < c.cfg.PeerTimeout/2 {
				for id, last := range c.peers {
					if now.Sub(last) > c.cfg.PeerTimeout {
						dead = append(dead, id)
						delete(c.peers, id)
					}
				}
			}
			c.mu.Unlock()
			for _, id := range dead {
				c.log.Warn().Str("replica", id).Msg("replica silent; forgetting its routes")
				dropRemote(c.remote.Load(), id)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c.replicaGone(ctx, id)
				cancel()
			}
		}
	}
}

// replicaGone releases a replica's sessions and drops its routes, in that order: if it was not
// dead after all (cut off for a while), the drop notice makes it resync, which marks its
// sessions online again after, never before, they were released.
func (c *Cluster) replicaGone(ctx context.Context, id string) {
	if n, err := c.bus.ReleaseOrphans(ctx, id); err != nil {
		c.log.Warn().Err(err).Str("replica", id).Msg("sessions of a dead replica not released")
	} else if n > 0 {
		c.log.Info().Str("replica", id).Int("sessions", n).Msg("sessions of a dead replica marked offline")
	}
	_ = c.bus.DropReplica(ctx, id)
}

// Peers appends the replicas currently known alive to dst.
func (c *Cluster) Peers(dst []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.peers {
		dst = append(dst, id)
	}
	return dst
}

func (c *Cluster) isPeer(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.peers[id]
	return ok
}
