package bus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// A link is one subscription connection and the goroutine that keeps it alive. A single Redis
// needs one link for all channels; a cluster needs one per hash slot (see makeLinks).
type link struct {
	b        *Bus
	name     string // for logs and CLIENT SETNAME
	channels []string
	handlers []func([]byte) // handlers[i] gets channels[i]'s payloads
	resync   bool           // a reconnect may have lost messages that need OnReconnect

	// up and everUp are guarded by b.statusMu.
	up, everUp bool
}

// makeLinks groups the channels to subscribe by connection.
func (b *Bus) makeLinks() []*link {
	o, n := &b.opts, b.names
	id := o.ReplicaID
	type sub struct {
		ch string
		h  func([]byte)
	}
	replica := []sub{{n.Inbound(id), o.OnBatch}, {n.Control(id), b.onControl}}
	var heartbeats, routes, dsubs []sub
	if o.OnHeartbeat != nil {
		heartbeats = []sub{{n.Heartbeats(), b.onHeartbeat}}
	}
	if o.OnRouteChange != nil {
		routes = []sub{{n.RouteChanges(), b.onRouteChange}}
	}
	if o.OnDurableSubs != nil {
		dsubs = []sub{{n.DurableSubsChanges(), b.onDurableSubs}}
	}
	mk := func(name string, resync bool, subs ...[]sub) *link {
		l := &link{b: b, name: name, resync: resync}
		for _, ss := range subs {
			for _, s := range ss {
				h := s.h
				if h == nil {
					h = func([]byte) {}
				}
				l.channels = append(l.channels, s.ch)
				l.handlers = append(l.handlers, h)
			}
		}
		return l
	}
	if !o.Cluster {
		return []*link{mk("sub", true, replica, heartbeats, routes, dsubs)}
	}
	// Sharded channels of different slots cannot share an SSUBSCRIBE (CROSSSLOT), and each slot
	// may live on another node: one connection per slot.
	links := []*link{mk("sub", true, replica)}
	if heartbeats != nil {
		links = append(links, mk("heartbeats", false, heartbeats))
	}
	if routes != nil {
		links = append(links, mk("routes", true, routes))
	}
	if dsubs != nil {
		links = append(links, mk("dsubs", true, dsubs))
	}
	return links
}

func (b *Bus) onHeartbeat(p []byte) {
	hb, err := DecodeHeartbeat(p)
	if err != nil {
		b.log.Debug().Err(err).Msg("bus: undecodable heartbeat ignored")
		return
	}
	b.opts.OnHeartbeat(hb)
}

func (b *Bus) onRouteChange(p []byte) {
	rc, err := DecodeRouteChange(p)
	if err != nil {
		b.log.Warn().Err(err).Msg("bus: undecodable route change ignored")
		return
	}
	b.opts.OnRouteChange(rc)
}

// addr returns the address of the Redis node serving the link's channels.
func (l *link) addr() (string, error) {
	o := &l.b.opts
	if !o.Cluster {
		return o.Addrs[0], nil
	}
	cc, ok := l.b.pubc().(*redis.ClusterClient)
	if !ok {
		return "", errors.New("bus: cluster mode without a cluster client")
	}
	ctx, cancel := context.WithTimeout(l.b.ctx, o.HealthTimeout)
	defer cancel()
	node, err := cc.MasterForKey(ctx, l.channels[0])
	if err != nil {
		return "", fmt.Errorf("finding the node for %s: %w", l.channels[0], err)
	}
	return node.Options().Addr, nil
}

// run connects, serves and reconnects until the bus stops.
func (l *link) run() {
	b := l.b
	defer b.wg.Done()
	log := b.log.With().Str("link", l.name).Logger()
	attempt := 0
	for b.ctx.Err() == nil {
		addr, err := l.addr()
		var c *subConn
		if err == nil {
			c, err = dialSub(b.ctx, subSpec{
				addr: addr, conn: b.conn, sharded: b.opts.Cluster, channels: l.channels,
				name: "mcloudtt-" + b.opts.ReplicaID + "-" + l.name,
			}, &b.opts)
		}
		if err != nil {
			if b.ctx.Err() != nil {
				return
			}
			attempt++
			d := b.backoff(attempt)
			log.Warn().Err(err).Str("addr", addr).Int("attempt", attempt).Dur("retry_in", d).
				Msg("bus: redis subscription failed")
			b.setLink(l, false, err)
			if cc, ok := b.pubc().(*redis.ClusterClient); ok {
				cc.ReloadState(b.ctx)
			}
			if !b.sleep(d) {
				return
			}
			continue
		}
		log.Info().Str("addr", addr).Int("attempt", attempt+1).Strs("channels", l.channels).
			Msg("bus: redis subscription up")
		upAt := time.Now()
		b.setLink(l, true, nil)
		err = l.serve(c)
		c.close()
		if b.ctx.Err() != nil {
			return
		}
		log.Warn().Err(err).Str("addr", addr).Dur("lasted", time.Since(upAt)).
			Msg("bus: redis subscription lost")
		b.setLink(l, false, err)
		// A connection that lived long resets the backoff; one that dies at once (a Redis
		// dropping us for being slow, say) keeps growing it.
		if time.Since(upAt) > b.opts.BackoffMax+b.opts.HealthTimeout {
			attempt = 0
		}
		attempt++
		d := b.backoff(attempt)
		log.Info().Int("attempt", attempt).Dur("retry_in", d).Msg("bus: redis subscription reconnecting")
		if !b.sleep(d) {
			return
		}
	}
}

var errHealth = errors.New("bus: no message or PONG within HealthTimeout (health check)")

// serve reads pushes until the connection fails or the bus stops, while a second goroutine
// sends a PING every HealthInterval.
func (l *link) serve(c *subConn) error {
	b := l.b
	stop := context.AfterFunc(b.ctx, func() { c.close() })
	defer stop()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(b.opts.HealthInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := c.ping(b.opts.WriteTimeout); err != nil {
					c.close() // the reader sees it at once
					return
				}
			}
		}
	}()
	defer func() {
		c.close() // unblocks a PING stuck on a full socket buffer
		close(done)
		wg.Wait()
	}()
	for {
		kind, ch, payload, err := c.next()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errHealth
			}
			return err
		}
		switch kind {
		case pushMessage:
			b.stats.received.Add(1)
			b.stats.recvBytes.Add(uint64(len(payload)))
			for i, name := range l.channels {
				if string(ch) == name {
					l.handlers[i](payload)
					break
				}
			}
		case pushDiscarded:
			b.stats.discarded.Add(1)
			b.log.Warn().Str("channel", string(ch)).Int("max", b.opts.MaxReceiveBytes).
				Msg("bus: payload above MaxReceiveBytes discarded")
		case pushUnsubscribe:
			// Redis Cluster unsubscribes sharded subscribers when their slot moves.
			return fmt.Errorf("bus: redis unsubscribed us from %s (slot moved?)", ch)
		}
	}
}
