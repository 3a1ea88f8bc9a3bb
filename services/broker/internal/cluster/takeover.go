package cluster

import (
	"context"
	"time"
)

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
