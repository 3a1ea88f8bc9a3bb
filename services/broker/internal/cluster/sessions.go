package cluster

import (
	"context"
	"errors"
	"hash/maphash"
	"math/rand/v2"
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

type pendingAppend struct {
	bm   *bus.Message
	q2   *Q2
	skip func() bool // when true at send time, fail instead of sending
	done func(error)
	ts   []target
}

type target struct {
	client string
	inc    uint64
	qos    byte
	retain bool
}

type pendingCommit struct {
	build func() *bus.Commit
	done  func(error)
}

type pendingRead struct {
	r  *bus.LogRead
	fn func([]bus.LogEntry, error)
}

// lane is one queue of appends and commits with its flusher goroutine (see Store).
type lane struct {
	mu       sync.Mutex
	appends  []*pendingAppend
	commits  []*pendingCommit
	flushing bool
	idle     *sync.Cond // signalled when a flush ends
	kick     chan struct{}
}

// writeLanes is the number of lanes: enough pipelines in flight to share Redis' fsyncs and
// overlap one lane's round trip with another's work, few enough that a lane's pipeline still
// carries many messages.
const writeLanes = 4

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

// laneOf is the lane of a publisher's appends and of a session's commits.
func (s *Store) laneOf(clientID string) *lane {
	return s.lanes[maphash.String(laneSeed, clientID)%uint64(len(s.lanes))]
}

var laneSeed = maphash.MakeSeed()

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

// Claim makes this replica the owner of session id. A live replica that holds it is asked to let
// go first (its connection closes as taken over and its last commits are written), at most a
// few seconds; a dead one is fenced by the claim. With clean, the stored session is discarded.
func (s *Store) Claim(id string, clean bool, expiry time.Duration) (bus.SessionClaim, error) {
	b := s.c.bus
	if b == nil {
		return bus.SessionClaim{}, errNoBus
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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

// Index writes session id's indexed subscriptions (empty: none) with the claim's epoch and waits
// until every replica has them (Redis delivered the notice back to this one, a second at most),
// so that a message accepted anywhere after the SUBACK is appended to the session's log.
func (s *Store) Index(id string, epoch uint64, ds bus.DurableSubs) error {
	b := s.c.bus
	if b == nil {
		return errNoBus
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	seq, written, err := b.SetDurableSubs(ctx, id, epoch, ds)
	if err != nil || !written {
		if err == nil {
			err = bus.ErrFenced
		}
		return err
	}
	// Apply it here at once (the notice may come later).
	s.apply(bus.DurableSubsChange{Client: id, Subs: subsOrNil(ds), Origin: s.c.self, Seq: seq})
	s.mu.Lock()
	if seq == 0 || s.lastSeen >= seq {
		s.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	s.waiters[seq] = ch
	s.mu.Unlock()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		s.mu.Lock()
		delete(s.waiters, seq)
		s.mu.Unlock()
	case <-s.stopped:
	}
	return nil
}

func subsOrNil(ds bus.DurableSubs) *bus.DurableSubs {
	if len(ds.Subs) == 0 {
		return nil
	}
	return &ds
}

func (s *Store) onIndexChange(ch bus.DurableSubsChange) {
	s.mu.Lock()
	if ch.Origin == s.c.self {
		if ch.Seq > s.lastSeen {
			s.lastSeen = ch.Seq
		}
		for seq, w := range s.waiters {
			if seq <= ch.Seq {
				close(w)
				delete(s.waiters, seq)
			}
		}
	}
	if s.loading {
		s.missed = append(s.missed, ch)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.apply(ch)
}

// apply puts one index change into the cache.
func (s *Store) apply(ch bus.DurableSubsChange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.subs[ch.Client]
	if had && ch.Subs != nil && ch.Subs.Inc < old.Inc {
		return // an older incarnation's notice, late
	}
	var subs []bus.DurableSub
	if ch.Subs != nil {
		subs = ch.Subs.Subs
		s.subs[ch.Client] = *ch.Subs
	} else {
		delete(s.subs, ch.Client)
	}
	ReplaceIndexed(s.index.Load(), ch.Client, old.Subs, subs)
}

// ReplaceIndexed changes client's subscriptions in ix from old to subs. Publishers match ix
// without a lock while it changes: the new subscriptions go in before the old ones that are not
// among them go out, so that a subscription the session keeps (every claim announces the same
// entry again) is never missing for an instant, and no message that matches it is acknowledged
// without being appended.
func ReplaceIndexed(ix *topic.Index[string, bus.DurableSub], client string, old, subs []bus.DurableSub) {
	keep := make(map[string]bool, len(subs))
	for _, sub := range subs {
		_, _ = ix.Subscribe(sub.Filter, client, sub)
		keep[sub.Filter] = true
	}
	for _, sub := range old {
		if !keep[sub.Filter] {
			ix.Unsubscribe(sub.Filter, client)
		}
	}
}

// reloadIndex reads the whole index from Redis into a fresh cache, replaying the notices that
// arrived meanwhile.
func (s *Store) reloadIndex(ctx context.Context) error {
	s.mu.Lock()
	s.loading, s.missed = true, nil
	s.mu.Unlock()
	ix := topic.NewIndex[string, bus.DurableSub]()
	subs := make(map[string]bus.DurableSubs)
	err := s.c.bus.ScanDurableSubs(ctx, func(client string, ds bus.DurableSubs) {
		for _, sub := range ds.Subs {
			_, _ = ix.Subscribe(sub.Filter, client, sub)
		}
		subs[client] = ds
	})
	s.mu.Lock()
	missed := s.missed
	s.loading, s.missed = false, nil
	if err == nil {
		s.index.Store(ix)
		s.subs = subs
	}
	s.mu.Unlock()
	for _, ch := range missed {
		s.apply(ch)
	}
	return err
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

// sweepLoop removes index entries of sessions that expired in Redis, now and then.
func (s *Store) sweepLoop() {
	for {
		d := time.Minute + time.Duration(rand.Int64N(int64(30*time.Second)))
		select {
		case <-s.stopped:
			return
		case <-time.After(d):
		}
		if !s.c.connected() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		n, err := s.c.bus.SweepDurableSubs(ctx)
		cancel()
		if err != nil {
			s.c.log.Warn().Err(err).Msg("sweeping the persistent subscription index")
		} else if n > 0 {
			s.c.log.Info().Int("removed", n).Msg("expired sessions removed from the persistent subscription index")
		}
	}
}

// Append stores bm in the log of every persistent session whose indexed subscriptions match it
// (no-local ones of its publisher excepted), at the QoS and with the retain flag each gets, and
// calls done once all of them have it (nil) or one failed. done may be called before Append
// returns (nothing matched). q2 marks a QoS 2 message from a persistent publisher. skip, when
// not nil and true when the flusher comes to bm, fails it unsent: a publisher whose earlier
// message failed has the ones after it failed too, so that a resend keeps their order.
func (s *Store) Append(bm *bus.Message, q2 *Q2, skip func() bool, done func(error)) {
	ts := s.match(bm)
	s.enqueue(bm, ts, q2, skip, done)
}

// AppendTo stores bm in the log of one persistent session (incarnation inc) at qos, retained or
// not: retained messages for a new subscription.
func (s *Store) AppendTo(client string, inc uint64, bm *bus.Message, qos byte, retain bool, done func(error)) {
	s.enqueue(bm, []target{{client: client, inc: inc, qos: qos, retain: retain}}, nil, nil, done)
}

func (s *Store) enqueue(bm *bus.Message, ts []target, q2 *Q2, skip func() bool, done func(error)) {
	if len(ts) == 0 && q2 == nil {
		done(nil)
		return
	}
	if !s.c.connected() {
		s.appendFailed.Add(1)
		done(bus.ErrUnavailable)
		return
	}
	l := s.laneOf(bm.ClientID)
	l.mu.Lock()
	l.appends = append(l.appends, &pendingAppend{bm: bm, q2: q2, skip: skip, done: done, ts: ts})
	l.mu.Unlock()
	l.poke()
}

// Has reports whether a message on name may go to a persistent session's log.
func (s *Store) Has(name string) bool { return s.index.Load().HasMatch(name) }

// match finds the persistent sessions bm goes to, one target per session: the highest QoS of
// its matching subscriptions (at most the message's), retained if any of them keeps the flag
// [MQTT-3.3.4-2].
func (s *Store) match(bm *bus.Message) []target {
	if bm.QoS == 0 {
		return nil
	}
	var ts []target
	s.index.Load().Match(bm.Topic, func(_ string, client string, sub bus.DurableSub) {
		if sub.NoLocal && client == bm.ClientID {
			return // [MQTT-3.8.3-3]
		}
		q := min(bm.QoS, sub.QoS)
		if q == 0 {
			return
		}
		ret := bm.Retain && sub.RetainAsPublished
		for i := range ts {
			if ts[i].client == client {
				ts[i].qos = max(ts[i].qos, q)
				ts[i].retain = ts[i].retain || ret
				return
			}
		}
		ts = append(ts, target{client: client, qos: q, retain: ret})
	}, nil)
	if len(ts) == 0 {
		return nil
	}
	s.mu.Lock()
	for i := range ts {
		ts[i].inc = s.subs[ts[i].client].Inc
	}
	s.mu.Unlock()
	return ts
}

// Commit queues an owner's write to session id: build is called when the flusher sends it, so
// that later changes ride along; done gets the result (bus.ErrFenced: the session was claimed
// elsewhere).
func (s *Store) Commit(id string, build func() *bus.Commit, done func(error)) {
	l := s.laneOf(id)
	l.mu.Lock()
	l.commits = append(l.commits, &pendingCommit{build: build, done: done})
	l.mu.Unlock()
	l.poke()
}

func (l *lane) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Flush waits until every append and commit queued so far was written (or failed), 5 s at most.
func (s *Store) Flush() {
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range s.lanes {
		l.flush(deadline)
	}
}

func (l *lane) flush(deadline time.Time) {
	t := time.AfterFunc(time.Until(deadline), func() {
		l.mu.Lock()
		l.idle.Broadcast()
		l.mu.Unlock()
	})
	defer t.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for (len(l.appends) > 0 || len(l.commits) > 0 || l.flushing) && time.Now().Before(deadline) {
		l.poke()
		l.idle.Wait()
	}
}

func (s *Store) flushLoop(l *lane) {
	for {
		select {
		case <-s.stopped:
			l.failPending(errors.New("cluster: stopped"))
			return
		case <-l.kick:
		}
		for {
			l.mu.Lock()
			aps, cms := l.appends, l.commits
			l.appends, l.commits = nil, nil
			l.flushing = len(aps)+len(cms) > 0
			l.mu.Unlock()
			if len(aps)+len(cms) == 0 {
				l.mu.Lock()
				l.idle.Broadcast()
				l.mu.Unlock()
				break
			}
			s.send(aps, cms)
			l.mu.Lock()
			l.flushing = false
			l.idle.Broadcast()
			l.mu.Unlock()
		}
	}
}

func (l *lane) failPending(err error) {
	l.mu.Lock()
	aps, cms := l.appends, l.commits
	l.appends, l.commits = nil, nil
	l.idle.Broadcast()
	l.mu.Unlock()
	for _, a := range aps {
		a.done(err)
	}
	for _, c := range cms {
		c.done(err)
	}
}

// maxAppendMsgs bounds the messages of one append command (the script's arguments).
const maxAppendMsgs = 256

// send writes one round of appends and commits in one pipeline. Each session gets one append
// command per run of messages (in order); a QoS 2 message from a persistent publisher gets its
// own script, which ends the runs of its targets so that order per session holds.
func (s *Store) send(aps []*pendingAppend, cms []*pendingCommit) {
	b := s.c.bus
	kept := aps[:0]
	for _, pa := range aps {
		if pa.skip != nil && pa.skip() {
			s.appendFailed.Add(1)
			pa.done(bus.ErrUnavailable)
			continue
		}
		kept = append(kept, pa)
	}
	aps = kept
	var ws []bus.SessionWrite
	q2s := make([]*bus.Q2Append, len(aps))
	open := make(map[string]*bus.Append) // session -> its open append command
	type part struct {
		a *bus.Append
		n int // index of this message in a.Msgs
	}
	parts := make([][]part, len(aps))
	encs := make(map[uint32][]byte, 2)
	for i, pa := range aps {
		clear(encs)
		enc := func(t target) []byte {
			fl := uint32(t.qos) << LogQoSShift
			if t.retain {
				fl |= LogRetain
			}
			if e, ok := encs[fl]; ok {
				return e
			}
			m := *pa.bm
			m.Flags, m.Plain, m.Groups = fl, false, nil
			e := encodeOne(&m)
			encs[fl] = e
			return e
		}
		if pa.q2 != nil {
			q := &bus.Q2Append{Publisher: pa.q2.Publisher, Epoch: pa.q2.Epoch, PacketID: pa.q2.PacketID, MsgID: pa.bm.ID}
			for _, t := range pa.ts {
				delete(open, t.client)
				a := &bus.Append{Session: t.client, Inc: t.inc, Max: s.c.cfg.MaxQueued, Msgs: [][]byte{enc(t)}}
				q.Targets = append(q.Targets, a)
				parts[i] = append(parts[i], part{a, 0})
			}
			ws = append(ws, q)
			q2s[i] = q
			continue
		}
		for _, t := range pa.ts {
			a := open[t.client]
			if a == nil || a.Inc != t.inc || len(a.Msgs) >= maxAppendMsgs {
				a = &bus.Append{Session: t.client, Inc: t.inc, Max: s.c.cfg.MaxQueued}
				open[t.client] = a
				ws = append(ws, a)
			}
			a.Msgs = append(a.Msgs, enc(t))
			parts[i] = append(parts[i], part{a, len(a.Msgs) - 1})
		}
	}
	commits := make([]*bus.Commit, len(cms))
	for i, pc := range cms {
		commits[i] = pc.build()
		if commits[i] != nil {
			ws = append(ws, commits[i])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = b.WriteSessions(ctx, ws)
	cancel()

	// Publishers: a message is stored once every target has it (or the target is gone or
	// full: a counted drop, not a failure).
	wakes := make(map[string]map[string]bool) // owner -> sessions
	for i, pa := range aps {
		var err error
		if q := q2s[i]; q != nil && q.Err != nil {
			err = q.Err
		}
		for _, p := range parts[i] {
			a := p.a
			switch {
			case a.Err != nil:
				err = a.Err
			case a.Gone:
				// The session ended or was made again: nothing owed.
			case p.n >= a.Accepted:
				s.queueFull.Add(1) // its queue is full: a counted drop, not a failure
			default:
				if a.Online && a.Owner != "" {
					if wakes[a.Owner] == nil {
						wakes[a.Owner] = make(map[string]bool)
					}
					wakes[a.Owner][a.Session] = true
				}
			}
		}
		if err != nil {
			s.appendFailed.Add(1)
		} else {
			s.appended.Add(int64(len(parts[i])))
		}
		pa.done(err)
	}
	for owner, ids := range wakes {
		for id := range ids {
			if owner == s.c.self {
				s.c.host.Wake(id)
				continue
			}
			b.Publish(owner, &bus.Message{ID: bus.NewMessageID(), ClientID: id, Flags: flagWake}, nil)
		}
	}
	for i, pc := range cms {
		c := commits[i]
		if c == nil {
			pc.done(nil)
			continue
		}
		if errors.Is(c.Err, bus.ErrFenced) {
			s.fenced.Add(1)
		} else if c.Err == nil {
			s.commitsDone.Add(1)
		}
		pc.done(c.Err)
	}
}

// Read reads up to n entries of session id's log from entry from (after it, with after), and
// calls fn with them from the reader goroutine.
func (s *Store) Read(id, from string, after bool, n int, fn func([]bus.LogEntry, error)) {
	s.rmu.Lock()
	s.reads = append(s.reads, &pendingRead{r: &bus.LogRead{Session: id, From: from, After: after, Count: n}, fn: fn})
	s.rmu.Unlock()
	select {
	case s.rkick <- struct{}{}:
	default:
	}
}

func (s *Store) readLoop() {
	for {
		select {
		case <-s.stopped:
			return
		case <-s.rkick:
		}
		for {
			s.rmu.Lock()
			rs := s.reads
			s.reads = nil
			s.rmu.Unlock()
			if len(rs) == 0 {
				break
			}
			lrs := make([]*bus.LogRead, len(rs))
			for i, r := range rs {
				lrs[i] = r.r
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = s.c.bus.ReadLogs(ctx, lrs)
			cancel()
			for _, r := range rs {
				r.fn(r.r.Entries, r.r.Err)
			}
		}
	}
}
