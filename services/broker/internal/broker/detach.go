package broker

import (
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// What happens when a connection ends: the will, and the session kept until it expires.

// detach runs when a connected client's reader stops: will, session expiry, counters.
func (s *Server) detach(c *client) {
	defer close(c.done)
	sess := c.sess
	s.connDone(c, true)

	will := c.will
	if c.normal {
		will = nil
	}
	if c.takeover.Load() && !c.takeoverKeepsWill.Load() && will != nil {
		// Taken over by a connection that does not keep the will: publish now.
		s.publishWill(will)
		will = nil
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	sess.mu.Lock()
	owner := sess.client.Load() == c
	if owner {
		sess.client.Store(nil)
	}
	sess.mu.Unlock()
	if !owner {
		// Someone else owns the session now (takeover); its will handling was done above.
		return
	}
	if c.sessExpiry == 0 {
		s.endSessionLocked(sess)
		if will != nil {
			s.publishWill(will)
		}
		return
	}
	sess.mu.Lock()
	if will != nil {
		if c.willDelay > 0 {
			delay := min(c.willDelay, c.sessExpiry)
			sess.will = will
			sess.willTimer = time.AfterFunc(delay, func() { s.fireDelayedWill(sess) })
		} else {
			sess.mu.Unlock()
			s.publishWill(will)
			sess.mu.Lock()
		}
	}
	if c.sessExpiry != neverExpire {
		sess.expiryTimer = time.AfterFunc(c.sessExpiry, func() { s.expireSession(sess) })
	}
	sess.expiry = c.sessExpiry
	sess.offlineAt = time.Now()
	if sess.stored.Load() {
		// Offline now: the store keeps the session, expiring after its expiry interval, and
		// publishers keep appending to its log.
		sess.goOfflineLocked()
	}
	sess.mu.Unlock()
}

// fireDelayedWill publishes a session's delayed will if the client has not come back.
func (s *Server) fireDelayedWill(sess *session) {
	sess.mu.Lock()
	will := sess.will
	sess.will = nil
	sess.willTimer = nil
	sess.mu.Unlock()
	if will != nil {
		s.publishWill(will)
	}
}

// expireSession ends an offline session whose expiry interval has passed [MQTT-3.1.2-23].
func (s *Server) expireSession(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess.client.Load() != nil || s.sessions[sess.ID] != sess {
		return
	}
	s.endSessionLocked(sess)
}

// publishWill sends a will message; its expiry interval starts now. The ACL is asked at this
// moment, so a will written before an ACL change obeys the ACL in force when it fires.
func (s *Server) publishWill(will *message) {
	if !s.allowed(will.From, will.Username, will.Topic, auth.Write) {
		s.stats.drop(dropNotAuthorized)
		return
	}
	now := time.Now()
	m := *will
	m.ID = bus.NewMessageIDAt(now.UnixNano()) // each publication of the will is a message of its own
	m.Created = now
	if !will.Expires.IsZero() {
		m.Expires = now.Add(will.Expires.Sub(time.Time{}))
	}
	s.stats.willsSent.Add(1)
	s.publish(&m, nil, nil)
}
