package broker

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Sessions beyond one replica.
//
// A session lives in the memory of one replica, its owner, named by the key SessionOwner(id).
// A CONNECT on replica B sets the key to B and learns the previous owner A; if A is alive, B asks
// it on A's control channel to let go. A closes its connection (0x8E), writes the session to
// Redis and answers; B then loads it. If A is dead (SIGKILL), B loads what Redis has.
//
// What Redis holds of a persistent session: Session(id) has its subscriptions, expiry and the
// QoS 2 packet ids awaiting PUBREL, rewritten whenever they change; SessionQueue(id) has, while
// the session is offline, its unacknowledged and queued QoS 1/2 messages (packet ids kept),
// appended as they arrive. Both keys expire with the session. A replica that dies loses only
// what was not yet written (a few milliseconds) and the messages published for its offline
// sessions after it died and before the client came back.

// Session queue entry flags (bus.Message.Flags of an entry in SessionQueue).
const (
	qfPacketID = 0xFFFF  // packet id of an inflight message
	qfInflight = 1 << 16 // sent and not acknowledged: resent with DUP and the same id
	qfReleased = 1 << 17 // QoS 2, PUBREC received: PUBREL is resent
	qfQoSShift = 18      // 2 bits: the QoS of this delivery
	qfRetain   = 1 << 20 // delivered with the retain flag
)

// storedSession is the JSON in Session(id)'s "state" field.
type storedSession struct {
	Subs []storedSub `json:"subs"`
	// ExpirySecs is the session expiry interval; -1 never expires.
	ExpirySecs int64    `json:"expiry_s"`
	InQoS2     []uint16 `json:"in_qos2,omitempty"`
}

type storedSub struct {
	Filter string `json:"f"`
	QoS    byte   `json:"q"`
	NL     bool   `json:"nl,omitempty"`
	RAP    bool   `json:"rap,omitempty"`
	RH     byte   `json:"rh,omitempty"`
	SubID  uint32 `json:"id,omitempty"`
}

// loadedSession is a session read back from Redis.
type loadedSession struct {
	st       storedSession
	inflight []*inflight
	queue    []delivery
	held     []string // filters whose routes claim added ahead (see unhold)
}

// unhold drops the route references claim took so that the routes existed before the CONNACK;
// the session's own subscriptions hold them from then on (or nothing does, if it was not used).
func (c *Cluster) unhold(ld *loadedSession) {
	for _, f := range ld.held {
		c.removeFilter(f)
	}
	ld.held = nil
}

// sessionTTL is how long Redis keeps a session's keys: its expiry and a margin; 0 is forever.
func sessionTTL(expiry time.Duration) time.Duration {
	if expiry == neverExpire {
		return 0
	}
	return expiry + time.Minute
}

// stateLocked captures what Redis keeps of sess. Called with sess.mu held.
func (sess *Session) stateLocked() storedSession {
	st := storedSession{ExpirySecs: int64(sess.expiry / time.Second)}
	if sess.expiry == neverExpire {
		st.ExpirySecs = -1
	}
	for f, o := range sess.subs {
		st.Subs = append(st.Subs, storedSub{Filter: f, QoS: o.QoS, NL: o.NoLocal, RAP: o.RetainAsPublished, RH: o.RetainHandling, SubID: o.SubID})
	}
	for id := range sess.inQoS2 {
		st.InQoS2 = append(st.InQoS2, id)
	}
	return st
}

// entriesLocked encodes sess's inflight and queued messages for SessionQueue. Called with
// sess.mu held.
func (c *Cluster) entriesLocked(sess *Session) []any {
	out := make([]any, 0, len(sess.inflight)+len(sess.queue))
	for _, f := range sess.inflight {
		fl := uint32(f.id) | qfInflight | uint32(f.d.qos)<<qfQoSShift
		if f.released {
			fl |= qfReleased
		}
		if f.d.retain {
			fl |= qfRetain
		}
		out = append(out, encodeOne(f.d.msg, c.self, fl))
	}
	for _, d := range sess.queue {
		out = append(out, c.entry(d))
	}
	return out
}

func (c *Cluster) entry(d delivery) []byte {
	fl := uint32(d.qos) << qfQoSShift
	if d.retain {
		fl |= qfRetain
	}
	return encodeOne(d.msg, c.self, fl)
}

func (c *Cluster) keys(id string) (sess, queue, owner string) {
	n := c.bus.Names()
	return n.Session(id), n.SessionQueue(id), n.SessionOwner(id)
}

// writeSessionOp rewrites a session's keys. entries nil leaves the queue alone; an empty
// non-nil slice clears it.
func (c *Cluster) writeSessionOp(id string, st storedSession, entries []any, expiry time.Duration) storeOp {
	sk, qk, ok := c.keys(id)
	state, _ := json.Marshal(st)
	ttl := sessionTTL(expiry)
	return func(p redis.Pipeliner) {
		ctx := context.Background()
		p.HSet(ctx, sk, "state", state)
		if entries != nil {
			p.Del(ctx, qk)
			if len(entries) > 0 {
				p.RPush(ctx, qk, entries...)
			}
		}
		if ttl > 0 {
			p.PExpire(ctx, sk, ttl)
			p.PExpire(ctx, qk, ttl)
			if entries != nil {
				// Offline: the client id's owner goes with the session (a CONNECT sets the
				// key again, without expiry).
				p.PExpire(ctx, ok, ttl)
			}
		} else {
			p.Persist(ctx, sk)
			p.Persist(ctx, qk)
		}
	}
}

// delIfOwner deletes the owner key only if it still names this replica. It runs with EVAL, not
// EVALSHA: in a pipeline there is no retry after NOSCRIPT.
const delIfOwner = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

// saveSession writes a persistent session's state (and its queue when it is offline).
func (c *Cluster) saveSession(sess *Session, withQueue bool) {
	sess.mu.Lock()
	if sess.ended || sess.expiry == 0 {
		sess.mu.Unlock()
		return
	}
	st := sess.stateLocked()
	var entries []any
	if withQueue {
		entries = c.entriesLocked(sess)
	}
	expiry := sess.expiry
	sess.mu.Unlock()
	c.store.do(c.writeSessionOp(sess.ID, st, entries, expiry))
}

// appendQueued adds one message to an offline session's queue in Redis. Called with sess.mu
// held, from enqueueLocked.
func (c *Cluster) appendQueuedLocked(sess *Session, d delivery) {
	_, qk, _ := c.keys(sess.ID)
	e := c.entry(d)
	ttl := sessionTTL(sess.expiry)
	c.store.do(func(p redis.Pipeliner) {
		p.RPush(context.Background(), qk, e)
		if ttl > 0 {
			p.PExpire(context.Background(), qk, ttl)
		}
	})
}

// forgetSession deletes an ended session's keys, and its owner key when this replica is done
// with the client id (disown).
func (c *Cluster) forgetSession(id string, disown bool) {
	if c.bus == nil {
		return
	}
	sk, qk, ok := c.keys(id)
	self := c.self
	c.store.do(func(p redis.Pipeliner) {
		ctx := context.Background()
		p.Del(ctx, sk, qk)
		if disown {
			p.Eval(ctx, delIfOwner, []string{ok}, self)
		}
	})
}

// onlineAgain clears the Redis queue of a session that is connected here again: its messages
// are in memory now.
func (c *Cluster) onlineAgain(id string) {
	_, qk, _ := c.keys(id)
	c.store.do(func(p redis.Pipeliner) { p.Del(context.Background(), qk) })
}

// claim makes this replica the owner of client id before a CONNECT attaches: the previous owner,
// if alive, lets go of it first. Unless cleanStart, it returns the session Redis holds (nil:
// none). With Redis away the replica decides alone.
func (c *Cluster) claim(id string, cleanStart bool) *loadedSession {
	if c.bus == nil || !c.bus.Status().Connected {
		return nil
	}
	sk, qk, ok := c.keys(id)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl := c.bus.Client()
	prev, err := cl.SetArgs(ctx, ok, c.self, redis.SetArgs{Get: true}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		c.srv.log.Warn().Err(err).Str("client_id", id).Msg("session owner not recorded")
		return nil
	}
	if prev != "" && prev != c.self && c.isPeer(prev) {
		c.askRelease(ctx, prev, id, cleanStart)
	}
	if cleanStart {
		if err := cl.Del(ctx, sk, qk).Err(); err != nil {
			c.srv.log.Warn().Err(err).Str("client_id", id).Msg("old session not deleted")
		}
		return nil
	}
	c.srv.mu.Lock()
	local := c.srv.sessions[id] != nil
	c.srv.mu.Unlock()
	if local {
		return nil // this replica has it in memory: that copy is the newest
	}
	var state *redis.StringCmd
	var entries *redis.StringSliceCmd
	_, err = cl.Pipelined(ctx, func(p redis.Pipeliner) error {
		state = p.HGet(ctx, sk, "state")
		entries = p.LRange(ctx, qk, 0, -1)
		p.Del(ctx, qk)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		c.srv.log.Warn().Err(err).Str("client_id", id).Msg("session not loaded from Redis")
		return nil
	}
	raw, err := state.Bytes()
	if err != nil {
		return nil // no stored session
	}
	ld := &loadedSession{}
	if err := json.Unmarshal(raw, &ld.st); err != nil {
		c.srv.log.Warn().Err(err).Str("client_id", id).Msg("stored session undecodable; starting a new one")
		return nil
	}
	// The subscriptions' routes exist before the CONNACK, as they did on the old replica.
	var routes []chan struct{}
	for _, sub := range ld.st.Subs {
		ld.held = append(ld.held, sub.Filter)
		if ch := c.addFilter(sub.Filter); ch != nil {
			routes = append(routes, ch)
		}
	}
	for _, ch := range routes {
		c.waitRoute(ch)
	}
	subIDs := func(name string) []uint32 {
		var ids []uint32
		for _, s := range ld.st.Subs {
			if s.SubID != 0 && topic.Match(s.Filter, name) {
				ids = append(ids, s.SubID)
			}
		}
		return ids
	}
	now := time.Now()
	for _, e := range entries.Val() {
		m, bm, ok := decodeOne([]byte(e))
		if !ok {
			continue
		}
		d := delivery{msg: m, qos: byte(bm.Flags>>qfQoSShift) & 3, retain: bm.Flags&qfRetain != 0, subIDs: subIDs(m.Topic)}
		if bm.Flags&qfInflight != 0 {
			ld.inflight = append(ld.inflight, &inflight{id: uint16(bm.Flags & qfPacketID), d: d, released: bm.Flags&qfReleased != 0})
			continue
		}
		if m.expired(now) {
			c.srv.stats.drop(dropExpired)
			continue
		}
		ld.queue = append(ld.queue, d)
	}
	return ld
}

// install puts a loaded session's state into sess, a new session that nobody uses yet. Called
// with Server.mu held.
func (c *Cluster) install(sess *Session, ld *loadedSession) {
	for _, s := range ld.st.Subs {
		_, _ = c.srv.subscribe(sess, s.Filter, SubOpts{QoS: s.QoS, NoLocal: s.NL, RetainAsPublished: s.RAP, RetainHandling: s.RH, SubID: s.SubID})
	}
	c.unhold(ld)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	sess.inflight = ld.inflight
	sess.queue = ld.queue
	for _, d := range ld.queue {
		sess.qBytes += d.msg.size()
	}
	c.srv.stats.inflight.Add(int64(len(ld.inflight)))
	c.srv.stats.queued.Add(int64(len(ld.queue)))
	if len(ld.st.InQoS2) > 0 {
		sess.inQoS2 = make(map[uint16]struct{}, len(ld.st.InQoS2))
		for _, id := range ld.st.InQoS2 {
			sess.inQoS2[id] = struct{}{}
		}
	}
}

func (c *Cluster) isPeer(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.peers[id]
	return ok
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
		c.srv.log.Warn().Str("client_id", id).Str("owner", owner).Msg("previous owner did not release the session in time; using what Redis has")
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

// release lets go of session id for replica from: the connection (if any) is taken over, the
// session written to Redis and dropped here, and from is told.
func (c *Cluster) release(id, from string, cleanStart bool) {
	s := c.srv
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil {
		if cl := sess.client.Load(); cl != nil {
			cl.takenOver(cleanStart) // returns after the connection's teardown
		}
		s.mu.Lock()
		if s.sessions[id] == sess && sess.client.Load() == nil {
			sess.mu.Lock()
			persistent := !sess.ended && sess.expiry != 0
			var st storedSession
			var entries []any
			if persistent {
				st = sess.stateLocked()
				entries = c.entriesLocked(sess)
			}
			expiry := sess.expiry
			sess.mu.Unlock()
			will := s.dropSessionLocked(sess)
			s.mu.Unlock()
			if cleanStart && will != nil {
				go s.publishWill(will) // the session ends: its delayed will goes now [MQTT-3.1.3-9]
			}
			c.store.flush() // earlier appends first
			if persistent && !cleanStart {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := c.bus.Client().Pipelined(ctx, func(p redis.Pipeliner) error {
					c.writeSessionOp(id, st, entries, expiry)(p)
					return nil
				})
				cancel()
				if err != nil {
					s.log.Warn().Err(err).Str("client_id", id).Msg("session not written for its new owner")
				}
			}
		} else {
			s.mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_ = c.bus.PublishControl(ctx, from, append([]byte{ctlReleased}, id...))
}

// resyncSessions writes what this replica holds back to Redis after a reconnect (Redis may have
// restarted empty): owner keys of its sessions, persistent sessions' state, offline queues.
func (c *Cluster) resyncSessions() {
	s := c.srv
	s.mu.Lock()
	sessions := make([]*Session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sess := range sessions {
		_, _, ok := c.keys(sess.ID)
		// Only where no other replica took the client over meanwhile.
		if err := c.bus.Client().SetNX(ctx, ok, c.self, 0).Err(); err != nil {
			return
		}
		c.saveSession(sess, sess.client.Load() == nil)
	}
}
