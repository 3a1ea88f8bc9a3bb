package broker

import (
	"errors"
	"slices"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// Commits of a persistent session: what changed in its log position and state is written to the
// store in one commit at a time, fenced by the claim's epoch (see persist.go).

// commitLocked writes what changed (now, or with the commit under way), then runs then.
func (s *session) commitLocked(then func()) {
	lg := s.lg()
	if then != nil {
		lg.then = append(lg.then, then)
	}
	if lg.committing || !s.stored.Load() {
		return
	}
	lg.committing = true
	s.srv.store.Commit(s.ID, s.buildCommit, s.commitDone)
}

// buildCommit is called by the store when it sends the commit.
func (s *session) buildCommit() *bus.Commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	lg := s.lg()
	c := &bus.Commit{Session: s.ID, Epoch: s.epoch}
	any := false
	if lg.dirtyCursor {
		cur := lg.cursor
		c.Cursor, any = &cur, true
	}
	if lg.dirtyMarks {
		c.Marks, any = true, true
		for q := range lg.done {
			c.Done = append(c.Done, q)
		}
		for q := range lg.released {
			c.Released = append(c.Released, q)
		}
		slices.Sort(c.Done)
		slices.Sort(c.Released)
	}
	if lg.trim != "" {
		c.TrimBefore, any = lg.trim, true
	}
	if len(lg.q2del) > 0 {
		c.DelQ2, any = lg.q2del, true
	}
	if lg.state != nil {
		c.State, any = lg.state, true
	}
	if lg.setExpiry {
		c.SetExpiry, c.Expiry, any = true, -1, true
		if s.expiry != neverExpire {
			c.Expiry = s.expiry
		}
	}
	if lg.offline {
		c.Offline, c.OfflineTTL, any = true, lg.offlineTTL, true
	}
	if lg.end {
		c.End, any = true, true
	}
	lg.dirtyCursor, lg.dirtyMarks, lg.trim, lg.q2del, lg.state = false, false, "", nil, nil
	lg.setExpiry, lg.offline, lg.end = false, false, false
	lg.inThen, lg.then = lg.then, nil
	if !any {
		lg.inCommit = nil
		return nil // nothing to write; the callbacks run when the store answers
	}
	lg.inCommit = c
	return c
}

// commitDone takes the store's answer: the callbacks of a written commit run; a failed one is
// merged back and retried; a fenced one means another replica holds the session now.
func (s *session) commitDone(err error) {
	s.mu.Lock()
	lg := s.lg()
	lg.committing = false
	c, then := lg.inCommit, lg.inThen
	lg.inCommit, lg.inThen = nil, nil
	switch {
	case err == nil:
	case errors.Is(err, bus.ErrFenced):
		s.mu.Unlock()
		s.srv.log.Warn().Str("client_id", s.ID).Msg("persistent session claimed by another replica; letting it go")
		go s.srv.releaseSession(s.ID, s, false)
		return
	default:
		if c != nil {
			lg.dirtyCursor = lg.dirtyCursor || c.Cursor != nil
			lg.dirtyMarks = lg.dirtyMarks || c.Marks
			if lg.trim == "" {
				lg.trim = c.TrimBefore
			}
			lg.q2del = append(c.DelQ2, lg.q2del...)
			if lg.state == nil {
				lg.state = c.State
			}
			lg.setExpiry = lg.setExpiry || c.SetExpiry
			lg.offline = lg.offline || c.Offline
			if c.Offline {
				lg.offlineTTL = c.OfflineTTL
			}
			lg.end = lg.end || c.End
		}
		lg.then = append(then, lg.then...)
		then = nil
		if !s.ended || lg.end || lg.offline {
			time.AfterFunc(500*time.Millisecond, func() {
				s.mu.Lock()
				s.commitLocked(nil)
				s.mu.Unlock()
			})
		}
		s.mu.Unlock()
		s.srv.log.Warn().Err(err).Str("client_id", s.ID).Msg("session state not written; retrying")
		return
	}
	pending := lg.dirtyCursor || lg.dirtyMarks || lg.trim != "" || len(lg.q2del) > 0 || lg.state != nil ||
		lg.setExpiry || lg.offline || lg.end || len(lg.then) > 0
	if pending {
		s.commitLocked(nil)
	}
	s.mu.Unlock()
	for _, f := range then {
		f()
	}
}

// settleCommits waits (until deadline) until everything the session changed is written: before
// it is handed to another claim, which would fence the writes still pending.
func (s *session) settleCommits(deadline time.Time) {
	for time.Now().Before(deadline) {
		s.mu.Lock()
		lg := s.lg()
		busy := s.stored.Load() && (lg.committing || lg.dirtyCursor || lg.dirtyMarks || lg.trim != "" || len(lg.q2del) > 0 ||
			lg.state != nil || lg.setExpiry || lg.offline || lg.end || len(lg.then) > 0)
		s.mu.Unlock()
		if !busy {
			return
		}
		s.srv.store.Flush()
	}
}

// settle waits until the session id held here, if any, has written what it changed.
func (s *Server) settle(id string) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil {
		sess.settleCommits(time.Now().Add(5 * time.Second))
	}
}
