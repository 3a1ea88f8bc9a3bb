// Package cluster joins a broker replica to the others through Redis (pkg/bus): the route table
// and its cache of the other replicas' filters, forwarding and receiving messages, retained
// messages in Redis, takeovers between replicas, the export stream, and the persistent sessions'
// store (sessions.go). The broker core (internal/broker) calls it through a small interface and
// is called back through Host; it never sees Redis, and this package never sees the core's types:
// what crosses the seam is pkg/bus values.
//
// Everything that talks to Redis runs off the publish path: route-table writes in routeLoop,
// forwarding through the bus's batching publisher, received batches in recvLoop, session appends
// and commits in the store's flusher, log reads in its reader.
package cluster

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Host is the broker core, as the cluster sees it.
type Host interface {
	// Deliver routes messages another replica forwarded to this one (Plain and Groups say for
	// which local subscriptions), storing those flagged FlagStoreRetained. The messages alias a
	// batch that is never reused.
	Deliver(msgs []bus.Message)
	// Wake says that the log of session id, held here, has new messages.
	Wake(id string)
	// Release lets go of session id, which another replica claimed: its connection here (if
	// any) is closed as taken over, and the session is dropped from memory without writing it
	// (its state is in the store). cleanStart: the new connection starts afresh (a delayed will
	// is then due now).
	Release(id string, cleanStart bool)
	// Retained returns this replica's retained messages, to seed a Redis that came back empty.
	Retained() []bus.Message
	// SetRetained stores a retained message read from Redis unless a newer one is held.
	SetRetained(bm *bus.Message)
	// PruneRetained drops the retained messages Redis does not have (keep), that were set
	// before began, on topics that travel between replicas: they were cleared while this
	// replica was cut off.
	PruneRetained(keep map[string]bool, began time.Time)
}

// Config is what the cluster needs of the broker's configuration.
type Config struct {
	ID                string
	HeartbeatInterval time.Duration
	PeerTimeout       time.Duration
	ExportFilters     []string
	ExportMaxLen      int64
	// MaxQueued bounds the messages waiting in one persistent session's log.
	MaxQueued int
}

// Envelope flags (bus.Message.Flags) between replicas.
const (
	FlagStoreRetained = 1 << 0 // the receiver stores the message as its topic's retained message
	flagWake          = 1 << 1 // not a message: ClientID's log has new messages (durable sessions)
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

// Forward is one destination replica of a message, with what it is for there.
type Forward struct {
	Replica string
	Plain   bool     // the replica has non-shared subscriptions for it
	Groups  []string // shared groups ("group/filter") the replica serves it to
}

// Cluster is one replica's membership in the cluster. Make it with New, pass BusOptions to
// bus.New, then Start.
type Cluster struct {
	cfg  Config
	host Host
	log  zerolog.Logger
	self string
	bus  *bus.Bus // set by Start

	remote atomic.Pointer[topic.Index[string, Route]] // other replicas' filters -> routes

	mu        sync.Mutex
	refs      map[string]int             // route-table entries (routeKey) -> local subscriptions using each
	adds      map[string][]chan struct{} // filters to add to Redis, with SUBSCRIBEs waiting
	removes   map[string]struct{}        // filters to remove from Redis
	peers     map[string]time.Time       // live replicas: last heartbeat received
	selfSeen  time.Time                  // our own last heartbeat, as received (link check)
	resyncing bool
	releases  map[string]chan struct{} // sessions this replica asked another to release
	missed    []bus.RouteChange        // notices received during a resync, replayed after it

	wake   chan struct{}
	ownAdd chan struct{} // an own route-add notice came back
	resync chan struct{}
	inbox  chan []byte
	stop   chan struct{}
	wg     sync.WaitGroup

	store  *Store // the persistent sessions (sessions.go)
	retOps *ops   // retained-message writes (retained.go)

	// exports are the export filters (nil: no export).
	exports *topic.Index[struct{}, struct{}]

	forwarded, received atomic.Int64
	synced              atomic.Bool // the last (re)connect's resync finished
	stopping            atomic.Bool // Stop began: no more resyncs

	heartbeat func() bus.Heartbeat // what this replica announces (SetHeartbeat)
}

// New prepares a replica to join the cluster. Pass BusOptions to bus.New, then call Start.
func New(cfg Config, host Host, log zerolog.Logger) *Cluster {
	c := &Cluster{
		cfg:     cfg,
		host:    host,
		log:     log,
		self:    cfg.ID,
		refs:    make(map[string]int),
		adds:    make(map[string][]chan struct{}),
		removes: make(map[string]struct{}),
		peers:   make(map[string]time.Time),
		wake:    make(chan struct{}, 1),
		ownAdd:  make(chan struct{}, 1),
		resync:  make(chan struct{}, 1),
		inbox:   make(chan []byte, 1024),
		stop:    make(chan struct{}),
	}
	c.remote.Store(topic.NewIndex[string, Route]())
	if len(cfg.ExportFilters) > 0 {
		c.exports = topic.NewIndex[struct{}, struct{}]()
		for _, f := range cfg.ExportFilters {
			_, _ = c.exports.Subscribe(f, struct{}{}, struct{}{})
		}
	}
	c.store = newStore(c)
	c.retOps = newOps()
	return c
}

// Store returns the persistent sessions' store.
func (c *Cluster) Store() *Store { return c.store }

// Ready reports whether the replica is part of the cluster: Redis connected and the state
// synchronised since the last connect.
func (c *Cluster) Ready() bool {
	return c.bus != nil && c.bus.Status().Connected && c.synced.Load()
}

// BusOptions sets the callbacks the cluster needs on o.
func (c *Cluster) BusOptions(o *bus.Options) {
	o.ReplicaID = c.self
	o.ExportMaxLen = c.cfg.ExportMaxLen
	o.OnBatch = func(b []byte) {
		select {
		case c.inbox <- b:
		case <-c.stop:
		}
	}
	o.OnControl = c.onControl
	o.OnHeartbeat = c.onHeartbeat
	o.OnRouteChange = c.onRouteChange
	o.OnDurableSubs = c.store.onIndexChange
	o.OnReconnect = func() { c.synced.Store(false); c.requestResync() }
	prev := o.OnStatus
	o.OnStatus = func(st bus.Status) {
		if st.Connected {
			c.requestResync()
		} else {
			c.synced.Store(false)
		}
		if prev != nil {
			prev(st)
		}
	}
}

// SetHeartbeat sets what the replica announces; the cluster sends it at once after joining, so
// the others know the replica before its first periodic heartbeat. Call it before Start.
func (c *Cluster) SetHeartbeat(f func() bus.Heartbeat) { c.heartbeat = f }

// Start runs the cluster's goroutines on b until Stop.
func (c *Cluster) Start(b *bus.Bus) {
	c.bus = b
	c.wg.Add(4)
	go func() { defer c.wg.Done(); c.routeLoop() }()
	go func() { defer c.wg.Done(); c.recvLoop() }()
	go func() { defer c.wg.Done(); c.peerLoop() }()
	go func() { defer c.wg.Done(); c.storeLoop() }()
	c.store.start()
}

// Stop ends the goroutines. Call it after the server drained and before closing the bus, so the
// last session and route writes reach Redis.
func (c *Cluster) Stop() {
	select {
	case <-c.stop:
		return
	default:
	}
	c.stopping.Store(true)
	c.flushRoutes()
	c.store.Flush()
	c.flushStoreOps()
	if c.bus != nil && c.bus.Status().Connected {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		// This replica is going away: the others forget its routes now, not after a timeout.
		_ = c.bus.DropReplica(ctx, c.self)
		cancel()
	}
	close(c.stop)
	c.store.stopLoops()
	c.wg.Wait()
}

// Stats are the cluster's counters, for the broker's metrics.
type Stats struct {
	Forwarded, Received, Exported, ExportDropped int64
	Peers, RemoteFilters, LocalFilters           int
	Appended, AppendFailed, Commits, Fenced      int64
	QueueFull                                    int64 // messages not appended: a session's log was full
	DurableSubscriptions                         int
}

// Stats returns the current counters (ok is always true: the broker's stand-alone seam says
// false).
func (c *Cluster) Stats() (Stats, bool) { return c.stats(), true }

func (c *Cluster) stats() Stats {
	st := Stats{Forwarded: c.forwarded.Load(), Received: c.received.Load(),
		Peers: len(c.Peers(nil)), RemoteFilters: c.remote.Load().Len()}
	c.mu.Lock()
	st.LocalFilters = len(c.refs)
	c.mu.Unlock()
	if c.bus != nil {
		bs := c.bus.Stats()
		st.Exported, st.ExportDropped = int64(bs.Exported), int64(bs.ExportDropped)
	}
	c.store.stats(&st)
	return st
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

func (c *Cluster) requestResync() {
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

func (c *Cluster) connected() bool { return c.bus != nil && c.bus.Status().Connected }

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

func (c *Cluster) resyncRoutes() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := c.log
	// Own table: add what is missing, remove what is stale.
	have, err := c.bus.Routes(ctx, c.self)
	if err != nil {
		log.Warn().Err(err).Msg("resync: reading own routes")
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
		log.Warn().Err(err).Msg("resync: adding own routes")
		return false
	}
	if err := c.bus.RemoveRoutes(ctx, c.self, stale...); err != nil {
		log.Warn().Err(err).Msg("resync: removing stale routes")
		return false
	}
	// Everyone else's tables.
	reps, err := c.bus.Replicas(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("resync: reading replicas")
		return false
	}
	// Redis may have restarted empty: its replica set fills again only as heartbeats arrive.
	// The replicas this one hears are read too.
	c.mu.Lock()
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
	c.mu.Unlock()
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
			log.Warn().Err(err).Msg("resync: reading routes")
			return false
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
	c.remote.Store(ix)
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

// Remote returns the other replicas' filters (read-only).
func (c *Cluster) Remote() *topic.Index[string, Route] { return c.remote.Load() }

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

// recvLoop routes what other replicas forwarded to this one, and passes wake-ups on.
func (c *Cluster) recvLoop() {
	var msgs []bus.Message
	for {
		var b []byte
		select {
		case <-c.stop:
			return
		case b = <-c.inbox:
		}
		var err error
		msgs, err = bus.DecodeBatchInto(msgs[:0], b)
		if err != nil {
			c.log.Warn().Err(err).Msg("undecodable batch from the bus dropped")
			continue
		}
		n := 0
		for i := range msgs {
			if msgs[i].Flags&flagWake != 0 {
				c.host.Wake(msgs[i].ClientID)
				continue
			}
			msgs[n] = msgs[i]
			n++
		}
		if n > 0 {
			c.received.Add(int64(n))
			c.host.Deliver(msgs[:n])
		}
		clear(msgs)
	}
}

// Forward sends bm to the destinations (bm.Plain and bm.Groups are set per destination). done,
// when not nil, is called once per destination with the bus's verdict.
func (c *Cluster) Forward(bm *bus.Message, fws []Forward, done func(error)) {
	for i := range fws {
		f := &fws[i]
		bm.Plain, bm.Groups = f.Plain, f.Groups
		c.forwarded.Add(1)
		c.bus.Publish(f.Replica, bm, done)
	}
}

// Exports reports whether messages on name go to the export stream.
func (c *Cluster) Exports(name string) bool {
	return c.exports != nil && !topic.IsSystem(name) && c.exports.HasMatch(name)
}

// Export appends bm to the export stream for the BigQuery adapter (see Exports). The bus counts
// what it could not queue.
func (c *Cluster) Export(bm *bus.Message) { c.bus.Export(bm) }

// ExportBatch queues the n messages of an envelope batch on the export stream (bus.ExportBatch).
func (c *Cluster) ExportBatch(batch []byte, n int) { c.bus.ExportBatch(batch, n) }

// ExportsPresence reports whether presence events can go to the export stream: once started.
func (c *Cluster) ExportsPresence() bool { return c.bus != nil }

// ExportPresence queues p, from this replica, on the export stream; a full queue drops it,
// counted by the bus.
func (c *Cluster) ExportPresence(p *bus.Presence) {
	p.Replica = c.self
	c.bus.ExportPresence(p)
}

// Control messages between replicas: 'T' clean from NUL id (take over: let go of session id),
// 'R' id (released).
const (
	ctlTakeover = 'T'
	ctlReleased = 'R'
)

// askRelease asks replica owner to let go of session id and waits for its answer, a few seconds
// at most (it may have just died).
func (c *Cluster) askRelease(ctx context.Context, owner, id string, cleanStart bool) {
	ch := make(chan struct{})
	c.mu.Lock()
	if c.releases == nil {
		c.releases = make(map[string]chan struct{})
	}
	c.releases[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.releases[id] == ch {
			delete(c.releases, id)
		}
		c.mu.Unlock()
	}()
	clean := byte('0')
	if cleanStart {
		clean = '1'
	}
	msg := append([]byte{ctlTakeover, clean}, c.self...)
	msg = append(append(msg, 0), id...)
	if err := c.bus.PublishControl(ctx, owner, msg); err != nil {
		return
	}
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		c.log.Warn().Str("client_id", id).Str("owner", owner).Msg("previous owner did not release the session in time; claiming it anyway")
	case <-ctx.Done():
	}
}

func (c *Cluster) onControl(p []byte) {
	if len(p) < 2 {
		return
	}
	switch p[0] {
	case ctlReleased:
		id := string(p[1:])
		c.mu.Lock()
		ch := c.releases[id]
		delete(c.releases, id)
		c.mu.Unlock()
		if ch != nil {
			close(ch)
		}
	case ctlTakeover:
		rest := p[2:]
		for i, b := range rest {
			if b == 0 {
				from, id := string(rest[:i]), string(rest[i+1:])
				go c.release(id, from, p[1] == '1')
				return
			}
		}
	}
}

// release lets go of session id for replica from: the connection (if any) is taken over, its
// pending commits written (so the new owner starts from the latest cursor), the session dropped
// here, and from is told.
func (c *Cluster) release(id, from string, cleanStart bool) {
	c.host.Release(id, cleanStart)
	c.store.Flush()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = c.bus.PublishControl(ctx, from, append([]byte{ctlReleased}, id...))
}

// errNoBus: the cluster has not been started.
var errNoBus = errors.New("cluster: not started")
