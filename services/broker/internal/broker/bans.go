package broker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Operators' bans: a client whose id, user name or remote address a ban in force matches is
// refused at CONNECT (v5 CONNACK 0x8A Banned, 3.x 0x05 Not authorized), and a new ban kicks the
// matching clients already connected (as EMQX does). The bans live in Redis (pkg/bus bans.go);
// each replica keeps a copy, changed at once by the gateway's ban and unban requests and read
// again from Redis every few seconds by the app (SetBans), so a replica that missed a request
// catches up.

// banList is a replica's copy of the bans.
type banList struct {
	// mu guards what follows.
	mu   sync.RWMutex
	bans map[string]wire.Ban // by Ban.Key, each checked (Ban.Check)
	// changed records when a request changed a key here, so a reload read before that does not
	// undo it; entries older than banChangeMemory are dropped at the next reload.
	changed map[string]time.Time
}

// banChangeMemory is how long a request's change wins over reloads read before it.
const banChangeMemory = time.Minute

// match returns the ban in force at now that matches the client, if any.
func (l *banList) match(clientID, username, remote string, now time.Time) (wire.Ban, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, b := range l.bans {
		if now.Before(b.Until) && b.Matches(clientID, username, remote) {
			return b, true
		}
	}
	return wire.Ban{}, false
}

// apply adds (ban) or removes a ban, as a request said at now.
func (l *banList) apply(b wire.Ban, ban bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bans == nil {
		l.bans, l.changed = make(map[string]wire.Ban), make(map[string]time.Time)
	}
	if ban {
		l.bans[b.Key()] = b
	} else {
		delete(l.bans, b.Key())
	}
	l.changed[b.Key()] = now
}

// replace takes the bans read from Redis at readAt, except for keys a request changed since.
func (l *banList) replace(list []wire.Ban, readAt time.Time) {
	next := make(map[string]wire.Ban, len(list))
	for _, b := range list {
		if b.Check() == nil {
			next[b.Key()] = b
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, at := range l.changed {
		switch {
		case at.Before(readAt.Add(-banChangeMemory)):
			delete(l.changed, k)
		case !at.Before(readAt):
			if b, ok := l.bans[k]; ok {
				next[k] = b
			} else {
				delete(next, k)
			}
		}
	}
	if l.changed == nil {
		l.changed = make(map[string]time.Time)
	}
	l.bans = next
}

// SetBans replaces this replica's copy of the bans with list, read from Redis at readAt.
func (s *Server) SetBans(list []wire.Ban, readAt time.Time) { s.bans.replace(list, readAt) }

// adminBan applies a ban (kicking the matching clients connected here) or lifts one.
func (s *Server) adminBan(ctx context.Context, op string, b wire.Ban) (any, error) {
	if err := b.Check(); err != nil {
		return nil, err
	}
	now := time.Now()
	if op == wire.OpUnban {
		s.bans.apply(b, false, now)
		s.log.Info().Str("ban", b.Key()).Msg("ban lifted")
		return nil, nil
	}
	if !b.Until.After(now) {
		return nil, errors.New("ban: already ended")
	}
	s.bans.apply(b, true, now)
	s.log.Info().Str("ban", b.Key()).Time("until", b.Until).Str("by", b.By).Msg("ban in force")
	return s.kick(ctx, func(c *client) bool { return b.Matches(c.id, c.username, c.remote()) }), nil
}

// remote is the client's remote address, "" when unknown.
func (c *client) remote() string {
	if a := c.conn.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// refuseBanned refuses the CONNECT of a banned client (v5 0x8A Banned, 3.x 0x05 Not authorized)
// and reports whether it did.
func (c *client) refuseBanned() bool {
	b, banned := c.srv.bans.match(c.id, c.username, c.remote(), time.Now())
	if !banned {
		return false
	}
	c.event(c.srv.log.Info()).Str("ban", b.Key()).Msg("connect refused: banned")
	c.refuse(c.v3Or(mqtt.V3NotAuthorized, mqtt.Banned))
	return true
}
