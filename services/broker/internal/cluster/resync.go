package cluster

import (
	"context"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// doResync makes Redis hold exactly this replica's filters, reloads every other replica's
// filters into a fresh cache, merges the retained messages and the persistent sessions this
// replica holds with Redis, and reloads the index of persistent subscriptions. It runs after
// every (re)connect: notices sent while the link was down are lost.
func (c *Cluster) doResync() {
	if c.bus == nil || c.stopping.Load() {
		return
	}
	start := time.Now()
	ok := c.resyncRoutesReplaying() && c.store.resync()
	if ok {
		c.resyncRetained()
		// Announce this replica at once, so the others forward retained messages to it from
		// now on; those published before they heard it are in Redis, read again shortly.
		if hb := c.heartbeat; hb != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.bus.PublishHeartbeat(ctx, hb())
			cancel()
		}
		// Heartbeats did not flow while the link was down: every replica gets a full peer
		// timeout from now to be heard again before it is judged dead.
		now := time.Now()
		c.mu.Lock()
		for id := range c.peers {
			c.peers[id] = now
		}
		c.mu.Unlock()
		c.synced.Store(true)
		time.AfterFunc(2*c.cfg.HeartbeatInterval+500*time.Millisecond, func() {
			select {
			case <-c.stop:
			default:
				c.resyncRetained()
			}
		})
	}
	if !ok {
		time.AfterFunc(time.Second, c.requestResync)
		return
	}
	c.log.Info().Dur("took", time.Since(start)).Int("remote_filters", c.remote.Load().Len()).
		Int("persistent_sessions_indexed", c.store.indexed()).Msg("cluster state synchronised")
}

// resyncRoutesReplaying runs resyncRoutes while holding back route notices, and applies those
// that arrived meanwhile to the new cache.
func (c *Cluster) resyncRoutesReplaying() bool {
	c.mu.Lock()
	c.resyncing, c.missed = true, nil
	c.mu.Unlock()
	ok := c.resyncRoutes()
	c.mu.Lock()
	missed := c.missed
	c.resyncing, c.missed = false, nil
	c.mu.Unlock()
	for _, rc := range missed {
		c.applyRouteChange(rc)
	}
	return ok
}

// resyncRoutes makes Redis hold exactly this replica's route table, then reads every live
// replica's table into a fresh route cache. It returns false when Redis failed it.
func (c *Cluster) resyncRoutes() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !c.resyncOwnRoutes(ctx) {
		return false
	}
	reps, ok := c.knownReplicas(ctx)
	if !ok {
		return false
	}
	ix, ok := c.readRemoteRoutes(ctx, reps)
	if !ok {
		return false
	}
	c.remote.Store(ix)
	return true
}

// resyncOwnRoutes writes this replica's table: adds what is missing, removes what is stale.
func (c *Cluster) resyncOwnRoutes(ctx context.Context) bool {
	have, err := c.bus.Routes(ctx, c.self)
	if err != nil {
		c.log.Warn().Err(err).Msg("resync: reading own routes")
		return false
	}
	c.mu.Lock()
	want := make(map[string]bool, len(c.refs))
	for f := range c.refs {
		want[f] = true
	}
	for f := range c.adds {
		want[f] = true
	}
	c.mu.Unlock()
	var stale []string
	for _, f := range have {
		if !want[f] {
			stale = append(stale, f)
		}
		delete(want, f)
	}
	missing := make([]string, 0, len(want))
	for f := range want {
		missing = append(missing, f)
	}
	if err := c.bus.AddRoutes(ctx, c.self, missing...); err != nil {
		c.log.Warn().Err(err).Msg("resync: adding own routes")
		return false
	}
	if err := c.bus.RemoveRoutes(ctx, c.self, stale...); err != nil {
		c.log.Warn().Err(err).Msg("resync: removing stale routes")
		return false
	}
	return true
}

// knownReplicas returns the replicas Redis knows, with those this one hears added: Redis may
// have restarted empty, and its replica set fills again only as heartbeats arrive. Of the two
// last-seen times of a replica, the later one counts.
func (c *Cluster) knownReplicas(ctx context.Context) ([]bus.ReplicaSeen, bool) {
	reps, err := c.bus.Replicas(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("resync: reading replicas")
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, last := range c.peers {
		found := false
		for i := range reps {
			if reps[i].ID == id {
				found = true
				if last.After(reps[i].LastSeen) {
					reps[i].LastSeen = last
				}
			}
		}
		if !found {
			reps = append(reps, bus.ReplicaSeen{ID: id, LastSeen: last})
		}
	}
	return reps, true
}

// readRemoteRoutes reads the tables of the other replicas in reps into a new route cache, and
// counts them as peers; one silent for longer than the peer timeout is gone instead (its
// sessions released, its routes dropped).
func (c *Cluster) readRemoteRoutes(ctx context.Context, reps []bus.ReplicaSeen) (*topic.Index[string, Route], bool) {
	ix := topic.NewIndex[string, Route]()
	now := time.Now()
	for _, r := range reps {
		if r.ID == c.self {
			continue
		}
		if now.Sub(r.LastSeen) > c.cfg.PeerTimeout {
			c.replicaGone(ctx, r.ID) // silent too long: gone
			continue
		}
		fs, err := c.bus.Routes(ctx, r.ID)
		if err != nil {
			c.log.Warn().Err(err).Msg("resync: reading routes")
			return nil, false
		}
		for _, f := range fs {
			addRemote(ix, r.ID, f)
		}
		c.mu.Lock()
		if _, ok := c.peers[r.ID]; !ok {
			c.peers[r.ID] = r.LastSeen
		}
		c.mu.Unlock()
	}
	return ix, true
}
