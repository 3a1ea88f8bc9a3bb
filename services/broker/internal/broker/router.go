package broker

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// router is the local publish path: it finds the sessions a message goes to and hands it to them.
type router struct {
	srv  *Server
	subs *topic.Index[*Session, SubOpts]
	// rr are round-robin counters for picking shared-group members, indexed by a hash of the
	// group and filter: bounded memory whatever groups come and go; two groups that share a
	// counter still each cycle through their members.
	rr     [256]atomic.Uint32
	rrSeed maphash.Seed
}

func newRouter() *router {
	return &router{subs: topic.NewIndex[*Session, SubOpts](), rrSeed: maphash.MakeSeed()}
}

// target is one matching subscription found for a message.
type target struct {
	sess   *Session
	opts   SubOpts
	shared bool
	dup    bool // another non-shared target of the same session follows
}

var targetPool = sync.Pool{New: func() any { s := make([]target, 0, 64); return &s }}

// route delivers m to every matching session. from is the publishing client, or nil.
func (r *router) route(m *Message, now time.Time, from *client) {
	tp := targetPool.Get().(*[]target)
	ts := (*tp)[:0]
	var fromSess *Session
	if from != nil {
		fromSess = from.sess
	}
	acl := r.srv.auth
	r.subs.Match(m.Topic, func(_ string, sess *Session, o SubOpts) {
		if o.NoLocal && sess == fromSess {
			return // [MQTT-3.8.3-3]
		}
		if acl != nil && !acl.Allowed(sess.ID, sess.username, m.Topic, auth.Read) {
			return // the ACL may deny a topic inside an allowed wildcard subscription
		}
		ts = append(ts, target{sess: sess, opts: o})
	}, func(g topic.SharedGroup[*Session, SubOpts]) {
		if mb, ok := r.pick(g); ok && (acl == nil || acl.Allowed(mb.Sub.ID, mb.Sub.username, m.Topic, auth.Read)) {
			ts = append(ts, target{sess: mb.Sub, opts: mb.V, shared: true})
		}
	})
	if len(ts) > 8 {
		r.markDuplicates(ts)
	}
	// Subscribers whose copy carries nothing of their own share one encoding per version.
	var enc *sharedEncoding
	if len(ts) > 1 {
		enc = new(sharedEncoding)
	}
	for i := range ts {
		t := &ts[i]
		if t.sess == nil {
			continue // merged into an earlier target
		}
		d := delivery{msg: m, qos: min(m.QoS, t.opts.QoS), retain: m.Retain && t.opts.RetainAsPublished}
		if t.opts.SubID != 0 {
			d.subIDs = []uint32{t.opts.SubID}
		}
		if !t.shared && (len(ts) <= 8 || t.dup) {
			// Overlapping subscriptions of one session: one copy at the highest QoS, with every
			// subscription identifier [MQTT-3.3.4-2], [MQTT-3.3.4-3].
			for j := i + 1; j < len(ts); j++ {
				u := &ts[j]
				if u.sess != t.sess || u.shared {
					continue
				}
				d.qos = max(d.qos, min(m.QoS, u.opts.QoS))
				d.retain = d.retain || m.Retain && u.opts.RetainAsPublished
				if u.opts.SubID != 0 {
					d.subIDs = append(d.subIDs, u.opts.SubID)
				}
				u.sess = nil
			}
		}
		if enc != nil && d.qos == 0 && !d.retain && len(d.subIDs) == 0 {
			d.enc = enc
		}
		t.sess.deliver(d, now, from)
	}
	clear(ts)
	*tp = ts[:0]
	targetPool.Put(tp)
}

var seenPool = sync.Pool{New: func() any { return make(map[*Session]int) }}

// markDuplicates flags the targets whose session appears again later, so that route merges only
// those instead of comparing every pair.
func (r *router) markDuplicates(ts []target) {
	seen := seenPool.Get().(map[*Session]int)
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].shared {
			continue
		}
		if _, ok := seen[ts[i].sess]; ok {
			ts[i].dup = true
		}
		seen[ts[i].sess] = i
	}
	clear(seen)
	seenPool.Put(seen)
}

// pick chooses the member of a shared group that gets a message [MQTT-4.8.2]: round robin over the
// members that are connected, or over all members when none is.
func (r *router) pick(g topic.SharedGroup[*Session, SubOpts]) (topic.Member[*Session, SubOpts], bool) {
	ms := g.Members
	if len(ms) == 0 {
		return topic.Member[*Session, SubOpts]{}, false
	}
	var h maphash.Hash
	h.SetSeed(r.rrSeed)
	h.WriteString(g.Group)
	h.WriteByte(0)
	h.WriteString(g.Filter)
	ctr := &r.rr[h.Sum64()%uint64(len(r.rr))]
	start := int(ctr.Add(1))
	for i := range ms {
		mb := ms[(start+i)%len(ms)]
		if mb.Sub.client.Load() != nil {
			return mb, true
		}
	}
	return ms[start%len(ms)], true
}
