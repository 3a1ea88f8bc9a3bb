package cluster

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Store keeps the persistent sessions of the cluster in Redis (pkg/bus, sessions.go): the
// broker core claims a session when its client connects, and commits what changes; publishers
// on any replica append to the logs of the sessions their messages match, found in the cached
// index of persistent subscriptions, before the publisher is acknowledged; the session's owner
// reads its log when woken.
//
// Batching: appends and commits queue up in a few lanes, and each lane's flusher goroutine sends
// its queue, one pipeline at a time, as soon as the previous pipeline's replies are in: under load
// a pipeline carries many messages (and one append command per session per pipeline), with no
// added delay when idle. A publisher's messages all go through one lane (chosen by its client
// id), and so do a session's commits, so that a lane's order is the order that matters: per
// publisher into each session's log (MQTT orders messages per publisher and topic, not across
// publishers, and appends from other replicas already interleave with this one's), and per
// session for its owner's writes. The lanes' pipelines are in flight at the same time, so Redis
// syncs its append-only file once for several of them. The reader batches log reads the same way
// in one lane.
type Store struct {
	c *Cluster

	// index is the cached index of persistent subscriptions: filter -> client id -> subscription.
	// mu guards subs and the index's writes (the index is read without locks).
	mu       sync.Mutex
	index    atomic.Pointer[topic.Index[string, bus.DurableSub]]
	subs     map[string]bus.DurableSubs
	loading  bool                    // a full reload runs: notices are kept for replaying
	missed   []bus.DurableSubsChange // notices received during a reload
	waiters  map[uint64]chan struct{}
	held     map[string]uint64 // persistent sessions claimed here and online -> epoch
	claims   map[string]uint64 // client ids claimed here -> the claim's number (claimSeq)
	claimSeq uint64
	// claimLocks order a claim's entry into this replica's set of sessions with a forget's
	// removal of the same id (striped by id).
	claimLocks [64]sync.Mutex
	lastSeen   uint64 // the highest own notice sequence number seen

	lanes []*lane

	rmu     sync.Mutex
	reads   []*pendingRead
	rkick   chan struct{}
	stopped chan struct{}
	wg      sync.WaitGroup

	appended, appendFailed, commitsDone, fenced, queueFull atomic.Int64
}

// Q2 marks a QoS 2 message from a persistent publisher: its packet id is recorded in the
// publisher's session together with the appends (see bus.Q2Append).
type Q2 struct {
	Publisher string
	Epoch     uint64 // the publisher's claim of its session (see bus.Q2Append)
	PacketID  uint16
}

// Log entry flags: the delivery's QoS and retain flag for the session (bus.Message.Flags of a
// message in a session's log).
const (
	LogQoSShift = 8
	LogRetain   = 1 << 10
)

func newStore(c *Cluster) *Store {
	s := &Store{c: c, subs: make(map[string]bus.DurableSubs), waiters: make(map[uint64]chan struct{}),
		held: make(map[string]uint64), claims: make(map[string]uint64), rkick: make(chan struct{}, 1), stopped: make(chan struct{})}
	for range writeLanes {
		l := &lane{kick: make(chan struct{}, 1)}
		l.idle = sync.NewCond(&l.mu)
		s.lanes = append(s.lanes, l)
	}
	s.index.Store(topic.NewIndex[string, bus.DurableSub]())
	return s
}

func (s *Store) start() {
	s.wg.Add(2 + len(s.lanes))
	for _, l := range s.lanes {
		go func() { defer s.wg.Done(); s.flushLoop(l) }()
	}
	go func() { defer s.wg.Done(); s.readLoop() }()
	go func() { defer s.wg.Done(); s.sweepLoop() }()
}

func (s *Store) stopLoops() {
	close(s.stopped)
	s.wg.Wait()
}

func (s *Store) stats(st *Stats) {
	st.Appended, st.AppendFailed = s.appended.Load(), s.appendFailed.Load()
	st.Commits, st.Fenced, st.QueueFull = s.commitsDone.Load(), s.fenced.Load(), s.queueFull.Load()
	st.DurableSubscriptions = s.index.Load().Len()
}

func (s *Store) indexed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// claimTimeout bounds a claim: asking the previous owner to let go (up to 3 s when it is alive
// but slow), then the claim itself. A CONNECT whose claim does not finish in time is refused
// (server unavailable) and the client comes back later. In a reconnect storm the claims queue up
// in Redis, and a client refused after waiting its turn starts over at the end of the queue, so
// the bound is long (19,800 sessions moving at once took 10 s here, with no refusal) yet well
// below a client's CONNACK timeout (paho and MQTT.js wait 30 s).
const claimTimeout = 10 * time.Second

// Claim makes this replica the owner of session id. A live replica that holds it is asked to let
// go first (its connection closes as taken over and its last commits are written), at most a
// few seconds; a dead one is fenced by the claim. With clean, the stored session is discarded.
func (s *Store) Claim(id string, clean bool, expiry time.Duration) (bus.SessionClaim, error) {
	b := s.c.bus
	if b == nil {
		return bus.SessionClaim{}, errNoBus
	}
	ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
	defer cancel()
	if owner, _, err := b.SessionOwner(ctx, id); err == nil && owner != "" && owner != s.c.self {
		// Asked whether or not this replica has heard of it yet: a replica that is gone has no
		// subscriber on its control channel, and the ask returns at once.
		s.c.askRelease(ctx, owner, id, clean)
	}
	l := s.claimLock(id)
	l.Lock()
	sc, err := b.ClaimSession(ctx, id, clean, expiry)
	if err != nil {
		l.Unlock()
		return sc, err
	}
	s.mu.Lock()
	s.claimSeq++
	s.claims[id] = s.claimSeq
	s.mu.Unlock()
	l.Unlock()
	s.mu.Lock()
	if expiry != 0 {
		// Checked against Redis after every reconnect (resync); a clean session's record
		// only says who holds the client id, and Redis losing it loses nothing.
		s.held[id] = sc.Epoch
	}
	old, indexed := s.subs[id]
	s.mu.Unlock()
	if !sc.Present && indexed && old.Inc != sc.Inc {
		// A clean start: the old incarnation's subscriptions leave the index (appends for it
		// are refused anyway: they carry its incarnation).
		if _, _, err := b.SetDurableSubs(ctx, id, sc.Epoch, bus.DurableSubs{Inc: sc.Inc}); err != nil {
			s.c.log.Warn().Err(err).Str("client_id", id).Msg("old persistent subscriptions not removed from the index")
		}
	}
	return sc, nil
}

// Released forgets a session this replica no longer holds online (offline, taken over, ended,
// lost): a resync no longer checks it. The returned forget removes it from this replica's set of
// sessions in Redis, which ReleaseOrphans reads when this replica dies: call it once the
// session's last writes (offline, end) are in Redis, so that a crash before them still finds
// the session there and marks it offline and expiring. forget does nothing when the id was
// claimed here again meanwhile. It does not wait.
func (s *Store) Released(id string) (forget func()) {
	s.mu.Lock()
	delete(s.held, id)
	gen := s.claims[id]
	s.mu.Unlock()
	return func() { go s.forget(id, gen) }
}

func (s *Store) forget(id string, gen uint64) {
	l := s.claimLock(id)
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	again := s.claims[id] != gen
	if !again {
		delete(s.claims, id)
	}
	s.mu.Unlock()
	if b := s.c.bus; !again && b != nil && b.Status().Connected {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = b.ForgetSession(ctx, id)
		cancel()
	}
}

func (s *Store) claimLock(id string) *sync.Mutex {
	return &s.claimLocks[maphash.String(laneSeed, id)%uint64(len(s.claimLocks))]
}

// resync runs after every (re)connect: the index is read again (notices were lost), and the
// sessions held here are checked against Redis: one whose epoch is not ours any more (another
// replica claimed it, or Redis lost it) is released here, its client disconnected.
func (s *Store) resync() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.reloadIndex(ctx); err != nil {
		s.c.log.Warn().Err(err).Msg("resync: reading the persistent subscription index")
		return false
	}
	s.mu.Lock()
	ids := make([]string, 0, len(s.held))
	epochs := make([]uint64, 0, len(s.held))
	for id, e := range s.held {
		ids = append(ids, id)
		epochs = append(epochs, e)
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return true
	}
	now, err := s.c.bus.SessionEpochs(ctx, ids)
	if err != nil {
		s.c.log.Warn().Err(err).Msg("resync: checking held sessions")
		return false
	}
	for i, id := range ids {
		if now[i] != epochs[i] {
			s.c.log.Warn().Str("client_id", id).Bool("in_redis", now[i] != 0).
				Msg("a persistent session held here was claimed elsewhere or lost by Redis; letting it go")
			s.lost(id)
			continue
		}
		// Still ours. Another replica may have thought this one dead meanwhile and marked the
		// session offline (and the wake-ups sent while the link was down are lost): online
		// again, and its log read.
		id, epoch := id, epochs[i]
		_ = s.c.bus.HoldSession(ctx, id)
		s.Commit(id, func() *bus.Commit {
			s.mu.Lock()
			still := s.held[id] == epoch
			s.mu.Unlock()
			if !still {
				return nil // went offline or was taken meanwhile
			}
			return &bus.Commit{Session: id, Epoch: epoch, Online: true}
		}, func(error) {})
		s.c.host.Wake(id)
	}
	return true
}

// lost releases a session whose claim is no longer ours.
func (s *Store) lost(id string) {
	s.mu.Lock()
	delete(s.held, id)
	s.mu.Unlock()
	s.fenced.Add(1)
	go s.c.host.Release(id, false)
}
