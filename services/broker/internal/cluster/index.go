package cluster

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

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

// Has reports whether a message on name may go to a persistent session's log.
func (s *Store) Has(name string) bool { return s.index.Load().HasMatch(name) }

// Target is one persistent session a message goes to, at the QoS and with the retain flag it
// gets there, for the session's incarnation Inc.
type Target struct {
	Client string
	Inc    uint64
	QoS    byte
	Retain bool
}

// MatchDurable finds the persistent sessions of ix that bm goes to (nothing for QoS 0), one Target
// per session: the highest QoS of its matching subscriptions (at most the message's), retained if
// any of them keeps the flag [MQTT-3.3.4-2]; a no-local subscription of its publisher does not
// count [MQTT-3.8.3-3]. Inc is left 0.
func MatchDurable(ix *topic.Index[string, bus.DurableSub], bm *bus.Message) []Target {
	if bm.QoS == 0 {
		return nil
	}
	var ts []Target
	ix.Match(bm.Topic, func(_ string, client string, sub bus.DurableSub) {
		if sub.NoLocal && client == bm.ClientID {
			return
		}
		q := min(bm.QoS, sub.QoS)
		if q == 0 {
			return
		}
		ret := bm.Retain && sub.RetainAsPublished
		for i := range ts {
			if ts[i].Client == client {
				ts[i].QoS = max(ts[i].QoS, q)
				ts[i].Retain = ts[i].Retain || ret
				return
			}
		}
		ts = append(ts, Target{Client: client, QoS: q, Retain: ret})
	}, nil)
	return ts
}

// match is MatchDurable on the cached index, with each session's incarnation.
func (s *Store) match(bm *bus.Message) []Target {
	ts := MatchDurable(s.index.Load(), bm)
	if len(ts) == 0 {
		return nil
	}
	s.mu.Lock()
	for i := range ts {
		ts[i].Inc = s.subs[ts[i].Client].Inc
	}
	s.mu.Unlock()
	return ts
}
