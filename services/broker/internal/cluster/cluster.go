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

func (c *Cluster) requestResync() {
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

func (c *Cluster) connected() bool { return c.bus != nil && c.bus.Status().Connected }

// errNoBus: the cluster has not been started.
var errNoBus = errors.New("cluster: not started")
