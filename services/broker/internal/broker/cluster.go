package broker

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Cluster joins a replica to the others through the Redis bus (docs/ARCHITECTURE.md, "The
// cluster"). It keeps this replica's route table in Redis (a reference count per local filter),
// caches every other replica's filters, forwards each accepted PUBLISH to the replicas with a
// matching subscription only, and routes what they forward locally. Retained messages and
// persistent sessions are kept in Redis as well (retained.go, clustersession.go).
//
// Everything that talks to Redis runs off the publish path: route-table writes in routeLoop,
// retained and session writes in the store loop, forwarding through the bus's batching
// publisher, received batches in recvLoop.
type Cluster struct {
	srv  *Server
	self string
	bus  *bus.Bus // set by Start

	remote atomic.Pointer[topic.Index[string, struct{}]] // other replicas' filters -> replica id

	mu        sync.Mutex
	refs      map[string]int             // local filters -> local subscriptions using each
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
	store  *clusterStore
	stop   chan struct{}
	wg     sync.WaitGroup

	// exports are the export filters (nil: no export).
	exports *topic.Index[struct{}, struct{}]

	forwarded, received atomic.Int64
	synced              atomic.Bool // the last (re)connect's resync finished
	stopping            atomic.Bool // Stop began: no more resyncs

	heartbeat func() bus.Heartbeat // what this replica announces (SetHeartbeat)
}

// Ready reports whether the replica is part of the cluster: Redis connected and the state
// synchronised since the last connect.
func (c *Cluster) Ready() bool {
	return c.bus != nil && c.bus.Status().Connected && c.synced.Load()
}

// Envelope flags (bus.Message.Flags) the broker uses between replicas.
const (
	flagStoreRetained = 1 << 0 // the receiver stores the message as its topic's retained message
)

// peerTimeout is how long a replica may stay silent before the others forget its routes.
func (c *Cluster) peerTimeout() time.Duration { return c.srv.cfg.PeerTimeout }

// NewCluster prepares s to join the cluster as replica id. Pass its callbacks to bus.New with
// BusOptions, then call Start with the bus.
func NewCluster(s *Server) *Cluster {
	c := &Cluster{
		srv:     s,
		self:    s.cfg.ID,
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
	c.remote.Store(topic.NewIndex[string, struct{}]())
	if len(s.cfg.ExportFilters) > 0 {
		c.exports = topic.NewIndex[struct{}, struct{}]()
		for _, f := range s.cfg.ExportFilters {
			_, _ = c.exports.Subscribe(f, struct{}{}, struct{}{})
		}
	}
	s.cluster = c
	c.store = newClusterStore(c)
	s.retained = newClusterRetained(c)
	return c
}

// BusOptions sets the callbacks the cluster needs on o.
func (c *Cluster) BusOptions(o *bus.Options) {
	o.ReplicaID = c.self
	o.ExportMaxLen = c.srv.cfg.ExportMaxLen
	o.OnBatch = func(b []byte) {
		select {
		case c.inbox <- b:
		case <-c.stop:
		}
	}
	o.OnControl = c.onControl
	o.OnHeartbeat = c.onHeartbeat
	o.OnRouteChange = c.onRouteChange
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
	go func() { defer c.wg.Done(); c.store.loop() }()
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
	c.store.flush()
	if c.bus != nil && c.bus.Status().Connected {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		// This replica is going away: the others forget its routes now, not after a timeout.
		// Offline sessions it held are in Redis already.
		_ = c.bus.DropReplica(ctx, c.self)
		cancel()
	}
	close(c.stop)
	c.wg.Wait()
}

// addFilter counts a local subscription to filter. When it is the first, the filter is added to
// the replica's route table in Redis; the returned channel closes when that is done (or failed),
// so a SUBACK can wait for the route to exist. nil: nothing to wait for.
func (c *Cluster) addFilter(filter string) chan struct{} {
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
	return ch
}

// removeFilter drops one local subscription to filter; the last one removes the route.
func (c *Cluster) removeFilter(filter string) {
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

// waitRoute waits until a route added by addFilter is in Redis, at most a few seconds, and not
// at all while Redis is away (the route is written on reconnect).
func (c *Cluster) waitRoute(ch chan struct{}) {
	if ch == nil || c.bus == nil || !c.bus.Status().Connected {
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
			if c.bus.Status().Connected && c.synced.Load() {
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
		c.srv.log.Warn().Err(err).Int("adds", len(adds)).Int("removes", len(removes)).Msg("route table update failed; retrying")
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
// filters into a fresh cache, and merges the retained messages and sessions this replica holds
// with Redis. It runs after every (re)connect: notices sent while the link was down are lost.
func (c *Cluster) doResync() {
	if c.bus == nil || c.stopping.Load() {
		return
	}
	start := time.Now()
	ok := c.resyncRoutesReplaying()
	if ok {
		c.store.resync()
		// Announce this replica at once, so the others forward retained messages to it from
		// now on; those published before they heard it are in Redis, read again shortly.
		if hb := c.heartbeat; hb != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = c.bus.PublishHeartbeat(ctx, hb())
			cancel()
		}
		c.synced.Store(true)
		time.AfterFunc(2*c.srv.cfg.HeartbeatInterval+500*time.Millisecond, func() {
			select {
			case <-c.stop:
			default:
				c.srv.retained.(*clusterRetained).resync()
			}
		})
	}
	if !ok {
		time.AfterFunc(time.Second, c.requestResync)
		return
	}
	c.srv.log.Info().Dur("took", time.Since(start)).Int("remote_filters", c.remote.Load().Len()).Msg("cluster state synchronised")
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
	log := c.srv.log
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
	ix := topic.NewIndex[string, struct{}]()
	now := time.Now()
	for _, r := range reps {
		if r.ID == c.self {
			continue
		}
		if now.Sub(r.LastSeen) > c.peerTimeout() {
			_ = c.bus.DropReplica(ctx, r.ID) // silent too long: gone
			continue
		}
		fs, err := c.bus.Routes(ctx, r.ID)
		if err != nil {
			log.Warn().Err(err).Msg("resync: reading routes")
			return false
		}
		for _, f := range fs {
			_, _ = ix.Subscribe(f, r.ID, struct{}{})
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
			_, _ = ix.Subscribe(f, rc.Replica, struct{}{})
		}
	case bus.RouteRemove:
		for _, f := range rc.Filters {
			ix.Unsubscribe(f, rc.Replica)
		}
	case bus.RouteDrop:
		ix.UnsubscribeAll(rc.Replica)
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

// peerLoop forgets replicas whose heartbeats stopped: their routes leave the cache, and Redis.
// It does so only while this replica hears its own heartbeats, so a replica with a broken
// subscription does not declare everyone else dead.
func (c *Cluster) peerLoop() {
	t := time.NewTicker(c.srv.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.mu.Lock()
			var dead []string
			if now.Sub(c.selfSeen) < c.peerTimeout()/2 {
				for id, last := range c.peers {
					if now.Sub(last) > c.peerTimeout() {
						dead = append(dead, id)
						delete(c.peers, id)
					}
				}
			}
			c.mu.Unlock()
			for _, id := range dead {
				c.srv.log.Warn().Str("replica", id).Msg("replica silent; forgetting its routes")
				c.remote.Load().UnsubscribeAll(id)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_ = c.bus.DropReplica(ctx, id)
				cancel()
			}
		}
	}
}

// livePeers returns the replicas currently known alive.
func (c *Cluster) livePeers(dst []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.peers {
		dst = append(dst, id)
	}
	return dst
}

// recvLoop routes what other replicas forwarded to this one.
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
			c.srv.log.Warn().Err(err).Msg("undecodable batch from the bus dropped")
			continue
		}
		now := time.Now()
		for i := range msgs {
			bm := &msgs[i]
			m := fromBus(bm)
			c.received.Add(1)
			if bm.Flags&flagStoreRetained != 0 {
				c.srv.retained.(*clusterRetained).setLocal(m)
			}
			if m.expired(now) {
				continue
			}
			c.srv.router.route(m, now, nil, &remoteHints{plain: bm.Plain, groups: bm.Groups}, nil)
		}
		clear(msgs)
	}
}

// remoteHints tell the router what a forwarded message is for on this replica.
type remoteHints struct {
	plain  bool     // deliver to non-shared subscriptions
	groups []string // shared groups ("group/filter") this replica serves the message to
}

func (h *remoteHints) hasGroup(group, filter string) bool {
	for _, g := range h.groups {
		if len(g) == len(group)+1+len(filter) && g[:len(group)] == group && g[len(group)] == '/' && g[len(group)+1:] == filter {
			return true
		}
	}
	return false
}

// forward is one destination replica of a message, with what it is for there.
type forward struct {
	replica string
	plain   bool
	groups  []string
}

// toBus fills bm from m, for the envelope.
func toBus(bm *bus.Message, m *Message, origin string) {
	*bm = bus.Message{ID: m.ID, Origin: origin, ClientID: m.From, Username: m.Username, Topic: m.Topic,
		Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Created: m.Created.UnixNano()}
	if !m.Expires.IsZero() {
		bm.Expiry = m.Expires.UnixNano()
	}
	p := m.Props
	if p == nil {
		return
	}
	if p.has(mqtt.PropPayloadFormat) {
		bm.Props |= bus.PropPayloadFormat
		bm.PayloadFormat = p.PayloadFormat
	}
	if p.has(mqtt.PropContentType) {
		bm.Props |= bus.PropContentType
		bm.ContentType = p.ContentType
	}
	if p.has(mqtt.PropResponseTopic) {
		bm.Props |= bus.PropResponseTopic
		bm.ResponseTopic = p.ResponseTopic
	}
	if p.has(mqtt.PropCorrelationData) {
		bm.Props |= bus.PropCorrelationData
		bm.CorrelationData = p.CorrelationData
	}
	bm.UserProperties = p.User
}

// fromBus makes a Message of a received envelope message; it aliases the batch.
func fromBus(bm *bus.Message) *Message {
	m := &Message{ID: bm.ID, Topic: bm.Topic, Payload: bm.Payload, QoS: bm.QoS, Retain: bm.Retain,
		From: bm.ClientID, Username: bm.Username, Created: time.Unix(0, bm.Created)}
	if bm.Expiry != 0 {
		m.Expires = time.Unix(0, bm.Expiry)
	}
	if bm.Props == 0 && len(bm.UserProperties) == 0 {
		return m
	}
	p := &MessageProps{}
	if bm.Props&bus.PropPayloadFormat != 0 {
		p.PayloadFormat = bm.PayloadFormat
		p.Present |= 1 << mqtt.PropPayloadFormat
	}
	if bm.Props&bus.PropContentType != 0 {
		p.ContentType = bm.ContentType
		p.Present |= 1 << mqtt.PropContentType
	}
	if bm.Props&bus.PropResponseTopic != 0 {
		p.ResponseTopic = bm.ResponseTopic
		p.Present |= 1 << mqtt.PropResponseTopic
	}
	if bm.Props&bus.PropCorrelationData != 0 {
		p.CorrelationData = bm.CorrelationData
		p.Present |= 1 << mqtt.PropCorrelationData
	}
	if len(bm.UserProperties) > 0 {
		p.User = bm.UserProperties
		p.Present |= 1 << mqtt.PropUserProperty
	}
	m.Props = p
	return m
}

// send forwards m to the destinations. ack, when set, counts one pending acknowledgement per
// destination, released when Redis has the message.
func (c *Cluster) send(m *Message, fws []forward, retained bool, ack *pendingAck) {
	var bm bus.Message
	toBus(&bm, m, c.self)
	if retained {
		bm.Flags |= flagStoreRetained
	}
	for i := range fws {
		f := &fws[i]
		bm.Plain, bm.Groups = f.plain, f.groups
		c.forwarded.Add(1)
		if ack != nil {
			ack.add()
			c.bus.Publish(f.replica, &bm, ack.done)
		} else {
			c.bus.Publish(f.replica, &bm, c.sendFailed)
		}
	}
}

func (c *Cluster) sendFailed(err error) {
	if err != nil && !errors.Is(err, bus.ErrNoReceiver) {
		c.srv.stats.drop(dropClusterUnavailable)
	}
}

// forwardable reports whether messages on name travel between replicas: everything but the
// replica's own $SYS topics (probe topics do travel: that is what they test).
func (c *Cluster) forwardable(name string) bool {
	return !topic.IsSystem(name) || strings.HasPrefix(name, bus.ProbeTopicPrefix)
}

func (s *Server) clusterNames() bus.Names { return s.cluster.bus.Names() }

// export appends an accepted message to the export stream for the BigQuery adapter, if the
// export filters match. $SYS and probe topics are never exported. The bus counts what it could
// not queue (Redis far behind).
func (c *Cluster) export(m *Message) {
	if topic.IsSystem(m.Topic) || !c.exports.HasMatch(m.Topic) {
		return
	}
	var bm bus.Message
	toBus(&bm, m, c.self)
	c.bus.Export(&bm)
}
