package broker

import (
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/cluster"
)

// router is the local publish path: it finds the sessions a message goes to and hands it to them.
type router struct {
	srv  *Server
	subs *topic.Index[*session, subOpts]
	// rr are round-robin counters for picking shared-group members, indexed by a hash of the
	// group and filter: bounded memory whatever groups come and go; two groups that share a
	// counter still each cycle through their members.
	rr     [256]atomic.Uint32
	rrRep  [256]atomic.Uint32 // the same for choosing a replica in the cluster
	rrSeed maphash.Seed
}

func newRouter() *router {
	return &router{subs: topic.NewIndex[*session, subOpts](), rrSeed: maphash.MakeSeed()}
}

// target is one matching subscription found for a message.
type target struct {
	sess   *session
	opts   subOpts
	shared bool
	dup    bool // another non-shared target of the same session follows
}

var targetPool = sync.Pool{New: func() any { s := make([]target, 0, 64); return &s }}

// forwardPool holds the per-message lists of replicas to forward to (they would escape to the
// heap through the Cluster interface otherwise).
var forwardPool = sync.Pool{New: func() any { s := make([]cluster.Forward, 0, 4); return &s }}

// route delivers m to every matching session, and in a cluster forwards it to the replicas with
// matching subscriptions. from is the publishing client, or nil. hints is set for a message
// another replica forwarded: it says which local subscriptions it is for, and it is not
// forwarded again. ack counts the forwards (see pendingAck). matched tells whether any local
// subscription or other replica was found for m.
func (r *router) route(m *message, now time.Time, from *client, hints *remoteHints, ack *pendingAck) (matched bool) {
	tp := targetPool.Get().(*[]target)
	forwarding := hints == nil && r.srv.clustered && forwardable(m.Topic)
	ts, groups := r.match(m, (*tp)[:0], from, hints, forwarding)
	var fws []cluster.Forward
	var fp *[]cluster.Forward
	if forwarding {
		fp = forwardPool.Get().(*[]cluster.Forward)
		fws, ts = r.plan(m, (*fp)[:0], ts, groups)
	}
	matched = len(ts) > 0 || len(fws) > 0
	r.deliverAll(m, ts, now, from)
	clear(ts)
	*tp = ts[:0]
	targetPool.Put(tp)
	if len(fws) > 0 {
		r.forward(m, fws, ack)
	}
	if fp != nil {
		clear(fws)
		*fp = fws[:0]
		forwardPool.Put(fp)
	}
	return matched
}

// match appends to ts the local subscriptions m goes to (for shared groups, the member picked).
// When forwarding, the shared groups are returned instead, to be decided with the cluster (plan).
func (r *router) match(m *message, ts []target, from *client, hints *remoteHints, forwarding bool) ([]target, []topic.SharedGroup[*session, subOpts]) {
	var fromSess *session
	if from != nil {
		fromSess = from.sess
	}
	var groups []topic.SharedGroup[*session, subOpts] // shared groups decided with the cluster
	acl := r.srv.checksACL()
	r.subs.Match(m.Topic, func(_ string, sess *session, o subOpts) {
		if hints != nil && !hints.plain {
			return
		}
		if o.NoLocal && (sess == fromSess || hints != nil && sess.ID == m.From) {
			return // [MQTT-3.8.3-3]
		}
		if acl && !r.srv.allowed(sess.ID, sess.username, m.Topic, auth.Read) {
			return // the ACL may deny a topic inside an allowed wildcard subscription
		}
		ts = append(ts, target{sess: sess, opts: o})
	}, func(g topic.SharedGroup[*session, subOpts]) {
		if hints != nil && !hints.hasGroup(g.Group, g.Filter) {
			return
		}
		if forwarding {
			groups = append(groups, g)
			return
		}
		ts = r.pickLocal(ts, g, m.Topic)
	})
	return ts, groups
}

// deliverAll hands m to the sessions of the targets, one copy per session.
func (r *router) deliverAll(m *message, ts []target, now time.Time, from *client) {
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
		persistent := !t.shared && t.sess.stored.Load() // QoS 1/2 for it go through its log (persist.go)
		if t.opts.SubID != 0 {
			d.subIDs = []uint32{t.opts.SubID}
		}
		if !t.shared && (len(ts) <= 8 || t.dup) {
			mergeOverlapping(&d, ts, i)
		}
		if persistent && d.qos > 0 {
			continue
		}
		if enc != nil && d.qos == 0 && !d.retain && len(d.subIDs) == 0 {
			d.enc = enc
		}
		t.sess.deliver(d, now, from)
	}
}

// mergeOverlapping folds the later targets of ts[i]'s session into d: overlapping subscriptions
// of one session get one copy at the highest QoS, with every subscription identifier
// [MQTT-3.3.4-2], [MQTT-3.3.4-3]. The merged targets are cleared.
func mergeOverlapping(d *delivery, ts []target, i int) {
	m, sess := d.msg, ts[i].sess
	for j := i + 1; j < len(ts); j++ {
		u := &ts[j]
		if u.sess != sess || u.shared {
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

// forward sends m to other replicas. ack, when set, counts one pending acknowledgement per
// destination, released when Redis has the message.
func (r *router) forward(m *message, fws []cluster.Forward, ack *pendingAck) {
	var bm bus.Message
	toBus(&bm, m, r.srv.cfg.ID)
	if m.Retain {
		bm.Flags |= cluster.FlagStoreRetained
	}
	done := r.forwardFailed
	if ack != nil {
		for range fws {
			ack.add()
		}
		done = ack.done
	}
	r.srv.cluster.Forward(&bm, fws, done)
}

func (r *router) forwardFailed(err error) {
	if err != nil && !errors.Is(err, bus.ErrNoReceiver) {
		r.srv.stats.drop(dropClusterUnavailable)
	}
}

// pickLocal adds the local member of shared group g that gets the message, if the ACL lets it.
func (r *router) pickLocal(ts []target, g topic.SharedGroup[*session, subOpts], name string) []target {
	if mb, ok := r.pick(g); ok && r.srv.allowed(mb.Sub.ID, mb.Sub.username, name, auth.Read) {
		ts = append(ts, target{sess: mb.Sub, opts: mb.V, shared: true})
	}
	return ts
}

// plan finds the other replicas a locally published message goes to: those with a matching
// non-shared subscription, and for each shared group one replica among those with members
// (this one included), round robin. A retained message goes to every live replica, which stores
// it. local are the shared groups with local members.
func (r *router) plan(m *message, fws []cluster.Forward, ts []target, local []topic.SharedGroup[*session, subOpts]) ([]cluster.Forward, []target) {
	cl := r.srv.cluster
	at := func(rep string) *cluster.Forward {
		for i := range fws {
			if fws[i].Replica == rep {
				return &fws[i]
			}
		}
		fws = append(fws, cluster.Forward{Replica: rep})
		return &fws[len(fws)-1]
	}
	var remote []topic.SharedGroup[string, cluster.Route]
	if ix := cl.Remote(); ix.Len() > 0 {
		ix.Match(m.Topic, func(_ string, _ string, rt cluster.Route) {
			if rt.Durable && m.QoS > 0 {
				return // the store appends it for those subscriptions (Store.Append)
			}
			at(rt.Replica).Plain = true
		}, func(g topic.SharedGroup[string, cluster.Route]) {
			remote = append(remote, g)
		})
	}
	for _, lg := range local {
		var rg *topic.SharedGroup[string, cluster.Route]
		for i := range remote {
			if remote[i].Group == lg.Group && remote[i].Filter == lg.Filter {
				rg = &remote[i]
				break
			}
		}
		if rg == nil {
			ts = r.pickLocal(ts, lg, m.Topic)
			continue
		}
		n := r.rrReplica(lg.Group, lg.Filter) % uint32(len(rg.Members)+1)
		if n == 0 {
			ts = r.pickLocal(ts, lg, m.Topic)
		} else {
			f := at(rg.Members[n-1].Sub)
			f.Groups = append(f.Groups, lg.Group+"/"+lg.Filter)
		}
		rg.Members = nil // served
	}
	for _, rg := range remote {
		if len(rg.Members) == 0 {
			continue
		}
		n := r.rrReplica(rg.Group, rg.Filter) % uint32(len(rg.Members))
		f := at(rg.Members[n].Sub)
		f.Groups = append(f.Groups, rg.Group+"/"+rg.Filter)
	}
	if m.Retain {
		for _, p := range cl.Peers(nil) {
			at(p)
		}
	}
	return fws, ts
}

// rrReplica is the round-robin counter that picks a replica for a shared group.
func (r *router) rrReplica(group, filter string) uint32 {
	var h maphash.Hash
	h.SetSeed(r.rrSeed)
	h.WriteString(group)
	h.WriteByte(1)
	h.WriteString(filter)
	return r.rrRep[h.Sum64()%uint64(len(r.rrRep))].Add(1)
}

var seenPool = sync.Pool{New: func() any { return make(map[*session]int) }}

// markDuplicates flags the targets whose session appears again later, so that route merges only
// those instead of comparing every pair.
func (r *router) markDuplicates(ts []target) {
	seen := seenPool.Get().(map[*session]int)
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
func (r *router) pick(g topic.SharedGroup[*session, subOpts]) (topic.Member[*session, subOpts], bool) {
	ms := g.Members
	if len(ms) == 0 {
		return topic.Member[*session, subOpts]{}, false
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
