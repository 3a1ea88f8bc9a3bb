package cluster

import (
	"context"
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Route is one entry of the other replicas' route cache (Cluster.Remote): a replica with local
// subscriptions to the entry's filter.
type Route struct {
	Replica string
	// Durable: every one of the replica's subscriptions behind this entry belongs to a
	// persistent session and takes QoS 1 or 2: a QoS 1/2 message reaches them through their
	// logs (Store.Append), so only QoS 0 messages are forwarded for it. A replica can have a
	// plain and a durable entry for the same filter.
	Durable bool
}

// durableMark starts the route-table entry of a durable route (see Route): topic filters never
// contain U+0000 [MQTT-1.5.4-2]. In the cache, the entry's key is the replica id with the mark
// after it, so that both kinds of one replica and filter can be present.
const durableMark = "\x00"

// routeKey is the route-table entry of filter.
func routeKey(filter string, durable bool) string {
	if durable {
		return durableMark + filter
	}
	return filter
}

// addRemote puts one route-table entry of replica rep into ix.
func addRemote(ix *topic.Index[string, Route], rep, entry string) {
	if f, ok := strings.CutPrefix(entry, durableMark); ok {
		_, _ = ix.Subscribe(f, rep+durableMark, Route{Replica: rep, Durable: true})
		return
	}
	_, _ = ix.Subscribe(entry, rep, Route{Replica: rep})
}

func removeRemote(ix *topic.Index[string, Route], rep, entry string) {
	if f, ok := strings.CutPrefix(entry, durableMark); ok {
		ix.Unsubscribe(f, rep+durableMark)
		return
	}
	ix.Unsubscribe(entry, rep)
}

func dropRemote(ix *topic.Index[string, Route], rep string) {
	ix.UnsubscribeAll(rep)
	ix.UnsubscribeAll(rep + durableMark)
}

// AddFilter counts a local subscription to filter; durable: a persistent session's non-shared
// subscription at QoS 1 or 2, whose QoS 1/2 messages come through its log (see Route). When it
// is the first of its kind, the entry is added to the replica's route table in Redis; the
// returned func waits until that is done (a few seconds at most, and not at all while Redis is
// away), so a SUBACK can wait for the route to exist.
func (c *Cluster) AddFilter(filter string, durable bool) (wait func()) {
	filter = routeKey(filter, durable)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refs[filter]++
	if c.refs[filter] > 1 {
		return nil
	}
	delete(c.removes, filter)
	ch := make(chan struct{})
	c.adds[filter] = append(c.adds[filter], ch)
	c.kick()
	return func() { c.waitRoute(ch) }
}

// RemoveFilter drops one local subscription to filter, of the kind it was added with; the last
// one removes the route.
func (c *Cluster) RemoveFilter(filter string, durable bool) {
	filter = routeKey(filter, durable)
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.refs[filter] - 1
	if n > 0 {
		c.refs[filter] = n
		return
	}
	delete(c.refs, filter)
	if ws, ok := c.adds[filter]; ok {
		for _, w := range ws {
			close(w)
		}
		delete(c.adds, filter) // never announced: nothing to remove
		return
	}
	c.removes[filter] = struct{}{}
	c.kick()
}

func (c *Cluster) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// waitRoute waits until a route added by AddFilter is in Redis, at most a few seconds, and not
// at all while Redis is away (the route is written on reconnect).
func (c *Cluster) waitRoute(ch chan struct{}) {
	if ch == nil || !c.connected() {
		return
	}
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-c.stop:
	}
}

// routeResyncInterval is how often the route cache is read again from Redis in full.
const routeResyncInterval = 30 * time.Second

// routeLoop writes route-table changes to Redis, batched, and runs resyncs.
func (c *Cluster) routeLoop() {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	periodic := time.NewTicker(routeResyncInterval)
	defer periodic.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
			if !c.flushRoutes() {
				retry.Reset(200 * time.Millisecond)
			}
		case <-retry.C:
			if !c.flushRoutes() {
				retry.Reset(time.Second)
			}
		case <-c.resync:
			c.doResync()
		case <-periodic.C:
			// A lost notice (the sender died between writing its set and announcing it) is
			// healed by reading the tables again now and then.
			if c.connected() && c.synced.Load() {
				c.resyncRoutesReplaying()
			}
		}
	}
}

// flushRoutes writes pending route changes. It returns false when Redis refused them; they stay
// pending (and a resync writes the whole table anyway after a reconnect).
func (c *Cluster) flushRoutes() bool {
	c.mu.Lock()
	if len(c.adds) == 0 && len(c.removes) == 0 {
		c.mu.Unlock()
		return true
	}
	adds := make([]string, 0, len(c.adds))
	var waiters []chan struct{}
	for f, ws := range c.adds {
		adds = append(adds, f)
		waiters = append(waiters, ws...)
	}
	removes := make([]string, 0, len(c.removes))
	for f := range c.removes {
		removes = append(removes, f)
	}
	c.adds = make(map[string][]chan struct{})
	c.removes = make(map[string]struct{})
	c.mu.Unlock()
	defer func() {
		for _, w := range waiters {
			close(w)
		}
	}()
	if c.bus == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-c.ownAdd: // a stale signal
	default:
	}
	err := c.bus.AddRoutes(ctx, c.self, adds...)
	if err == nil && len(adds) > 0 && !c.stopping.Load() {
		// Redis writes a notice to every subscriber at once: when this replica has its own
		// notice back, the others have theirs, and the SUBACK can go.
		t := time.NewTimer(time.Second)
		select {
		case <-c.ownAdd:
		case <-t.C:
		}
		t.Stop()
	}
	if err == nil {
		err = c.bus.RemoveRoutes(ctx, c.self, removes...)
	}
	if err != nil {
		c.log.Warn().Err(err).Int("adds", len(adds)).Int("removes", len(removes)).Msg("route table update failed; retrying")
		c.mu.Lock()
		for _, f := range adds {
			if c.refs[f] > 0 {
				if _, ok := c.adds[f]; !ok {
					c.adds[f] = nil
				}
			}
		}
		for _, f := range removes {
			if c.refs[f] == 0 {
				c.removes[f] = struct{}{}
			}
		}
		c.mu.Unlock()
		return false
	}
	return true
}

func (c *Cluster) onRouteChange(rc bus.RouteChange) {
	if rc.Replica == c.self {
		if c.stopping.Load() {
			return // its own goodbye
		}
		if rc.Op == bus.RouteAdd {
			select {
			case c.ownAdd <- struct{}{}:
			default:
			}
		}
		if rc.Op == bus.RouteDrop {
			// Another replica thought this one dead (its heartbeats did not arrive): write the
			// table again.
			c.requestResync()
		}
		return
	}
	c.mu.Lock()
	if c.resyncing {
		c.missed = append(c.missed, rc)
		c.mu.Unlock()
		return
	}
	if rc.Op != bus.RouteDrop {
		if _, ok := c.peers[rc.Replica]; !ok {
			c.peers[rc.Replica] = time.Now()
		}
	}
	c.mu.Unlock()
	c.applyRouteChange(rc)
}

func (c *Cluster) applyRouteChange(rc bus.RouteChange) {
	ix := c.remote.Load()
	switch rc.Op {
	case bus.RouteAdd:
		for _, f := range rc.Filters {
			addRemote(ix, rc.Replica, f)
		}
	case bus.RouteRemove:
		for _, f := range rc.Filters {
			removeRemote(ix, rc.Replica, f)
		}
	case bus.RouteDrop:
		dropRemote(ix, rc.Replica)
		c.mu.Lock()
		delete(c.peers, rc.Replica)
		c.mu.Unlock()
	}
}

// Remote returns the other replicas' filters (read-only).
func (c *Cluster) Remote() *topic.Index[string, Route] { return c.remote.Load() }
