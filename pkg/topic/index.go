package topic

import (
	"hash/maphash"
	"iter"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Index is a concurrent subscription index: topic filter → subscribers. S identifies a subscriber
// (the broker uses a session or client id, the cluster route table a replica id) and V is what each
// subscription carries (options, a count, struct{}). Create one with NewIndex; the zero Index is not
// usable.
//
// # Design
//
// A trie with one node per filter level; a node's '+' and '#' children have fields of their own, so
// matching never looks them up. Each node publishes what readers need through atomic pointers to
// immutable values: its literal children and its non-shared subscribers are persistent hash maps
// (hamt.go), its shared groups an immutable slice. A writer builds the next version of the one map it
// changes, copying O(log32 n) small nodes, and publishes it with one atomic store.
//
// Concurrency: Match and HasMatch take no lock and write no shared memory (not even a reader count),
// so publishers on any number of cores never wait for each other or for writers. Subscribe,
// Unsubscribe, UnsubscribeAll, Filters and FiltersOf take mu, which serialises writers: one writer at a
// time keeps node creation and pruning simple, and subscribing is rare next to publishing.
//
// Lock order: mu is the only lock and nothing is called while holding it except this package's code.
// Match's callbacks run with no lock held, so they may call any method, mutating ones included.
//
// What a concurrent Match sees: every subscription present for the whole call is reported exactly
// once; one added or removed during the call is reported at most once, and its value is the old or
// the new one, never a mix. A Match does not see one global snapshot: of two subscriptions changed
// during it, it may see the later change and miss the earlier.
//
// Memory: a node is pruned as soon as it holds no subscription and no child, and hdel leaves no empty
// map node behind, so memory follows the live subscriptions and not the churn. Replaced versions are
// garbage once no Match holds them. The index copies every filter it keeps (strings.Clone), so
// callers may pass strings that alias a packet buffer they reuse.
type Index[S comparable, V any] struct {
	seed  maphash.Seed // hashes literal levels and subscribers; immutable
	root  *node[S, V]  // never pruned; immutable pointer
	count atomic.Int64 // subscriptions, shared memberships included

	// mu serialises writers and guards everything that follows, and every node's writer fields.
	mu    sync.Mutex
	nodes int             // trie nodes besides root, for tests of pruning
	bySub map[S]filterSet // sub → its filters as subscribed ("$share/g/f" form for shares)
	peak  int             // largest len(bySub) since it was last rebuilt
}

// node is a trie node. Readers see only the immutable filter and the atomic fields.
type node[S comparable, V any] struct {
	filter   string                                     // the (inner) filter this node stands for
	children atomic.Pointer[hnode[string, *node[S, V]]] // literal levels
	plus     atomic.Pointer[node[S, V]]
	hash     atomic.Pointer[node[S, V]]
	subs     atomic.Pointer[hnode[S, V]]         // non-shared subscriptions to filter
	groups   atomic.Pointer[[]SharedGroup[S, V]] // shared groups on filter; nil, never empty

	parent *node[S, V] // guarded by Index.mu
}

// level returns n's level in its parent: "+", "#" or a literal.
func (n *node[S, V]) level() string { return n.filter[strings.LastIndexByte(n.filter, '/')+1:] }

// SharedGroup is a shared subscription group on one filter: the members of "$share/<Group>/<Filter>".
type SharedGroup[S comparable, V any] struct {
	Group, Filter string
	// Members in the order they joined (re-subscribing keeps a member's place); a member that leaves
	// is removed without reordering the others, so a round-robin cursor over it stays meaningful.
	Members []Member[S, V]
}

// Member is one member of a SharedGroup and the value it subscribed with.
type Member[S comparable, V any] struct {
	Sub S
	V   V
}

// NewIndex returns an empty index.
func NewIndex[S comparable, V any]() *Index[S, V] {
	return &Index[S, V]{seed: maphash.MakeSeed(), root: new(node[S, V]), bySub: make(map[S]filterSet)}
}

func (ix *Index[S, V]) levelHash(level string) uint64 { return maphash.String(ix.seed, level) }
func (ix *Index[S, V]) subHash(sub S) uint64          { return maphash.Comparable(ix.seed, sub) }

// Subscribe adds sub's subscription to filter with value v, or replaces v if it exists. A $share
// filter ("$share/<group>/<f>") makes sub a member of group on f. It reports whether the subscription
// existed, and fails only on an invalid filter (see ValidateFilter).
func (ix *Index[S, V]) Subscribe(filter string, sub S, v V) (existed bool, err error) {
	if err := ValidateFilter(filter); err != nil {
		return false, err
	}
	filter = strings.Clone(filter)
	s, shared, _ := ParseShare(filter)

	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.pathLocked(s.Filter, true)
	if shared {
		existed = n.joinLocked(s.Group, sub, v)
	} else {
		var subs *hnode[S, V]
		subs, existed = hset(n.subs.Load(), 0, ix.subHash(sub), sub, v)
		n.subs.Store(subs)
	}
	if !existed {
		ix.count.Add(1)
		ix.bySub[sub] = ix.bySub[sub].add(filter)
		ix.peak = max(ix.peak, len(ix.bySub))
	}
	return existed, nil
}

// Unsubscribe removes sub's subscription to filter (a $share filter: its membership of the group)
// and reports whether it existed. Nodes left empty are pruned.
func (ix *Index[S, V]) Unsubscribe(filter string, sub S) bool {
	if ValidateFilter(filter) != nil {
		return false
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if !ix.unsubscribeLocked(filter, sub) {
		return false
	}
	if fs := ix.bySub[sub].remove(filter); fs.len() > 0 {
		ix.bySub[sub] = fs
	} else {
		ix.deleteSubLocked(sub)
	}
	return true
}

// deleteSubLocked removes sub from the reverse index. A Go map keeps the buckets of its largest size,
// so once it has shrunk to a quarter of its peak it is rebuilt: after a mass disconnect it returns
// the memory instead of keeping it forever. Amortised O(1).
func (ix *Index[S, V]) deleteSubLocked(sub S) {
	delete(ix.bySub, sub)
	if ix.peak > 1024 && len(ix.bySub) < ix.peak/4 {
		m := make(map[S]filterSet, len(ix.bySub))
		for k, v := range ix.bySub {
			m[k] = v
		}
		ix.bySub, ix.peak = m, len(m)
	}
}

// UnsubscribeAll removes every subscription of sub, as when a session ends or a cluster replica
// leaves, and returns how many there were.
func (ix *Index[S, V]) UnsubscribeAll(sub S) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	fs := ix.bySub[sub]
	ix.deleteSubLocked(sub)
	for f := range fs.all() {
		ix.unsubscribeLocked(f, sub)
	}
	return fs.len()
}

// unsubscribeLocked removes the subscription from the trie, prunes, and keeps count; not bySub.
func (ix *Index[S, V]) unsubscribeLocked(filter string, sub S) bool {
	s, shared, _ := ParseShare(filter)
	n := ix.pathLocked(s.Filter, false)
	if n == nil {
		return false
	}
	if shared {
		if !n.leaveLocked(s.Group, sub) {
			return false
		}
	} else {
		subs, existed := hdel(n.subs.Load(), 0, ix.subHash(sub), sub)
		if !existed {
			return false
		}
		n.subs.Store(subs)
	}
	ix.count.Add(-1)
	ix.pruneLocked(n)
	return true
}

// pathLocked returns the node for a valid non-shared filter, creating the missing nodes on the way
// if create, else returning nil when one is missing. New nodes are published empty, so a concurrent
// Match may walk into them and find nothing.
func (ix *Index[S, V]) pathLocked(filter string, create bool) *node[S, V] {
	n := ix.root
	for rest, more := filter, true; more; {
		var level string
		level, rest, more = cut(rest)
		var next *node[S, V]
		switch level {
		case "+":
			if next = n.plus.Load(); next == nil && create {
				next = ix.newNodeLocked(n, filter, rest, more)
				n.plus.Store(next)
			}
		case "#":
			if next = n.hash.Load(); next == nil && create {
				next = ix.newNodeLocked(n, filter, rest, more)
				n.hash.Store(next)
			}
		default:
			h := ix.levelHash(level)
			children := n.children.Load()
			if next, _ = hget(children, h, level); next == nil && create {
				next = ix.newNodeLocked(n, filter, rest, more)
				children, _ = hset(children, 0, h, level, next)
				n.children.Store(children)
			}
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// newNodeLocked returns a node below parent for the level just cut from filter; rest and more are
// what cut returned, and locate the level's end.
func (ix *Index[S, V]) newNodeLocked(parent *node[S, V], filter, rest string, more bool) *node[S, V] {
	end := len(filter) - len(rest)
	if more {
		end-- // the '/' before rest
	}
	ix.nodes++
	return &node[S, V]{filter: filter[:end], parent: parent}
}

// pruneLocked unlinks n and then each ancestor that is left empty.
func (ix *Index[S, V]) pruneLocked(n *node[S, V]) {
	for n != ix.root && n.empty() {
		p := n.parent
		switch level := n.level(); level {
		case "+":
			p.plus.Store(nil)
		case "#":
			p.hash.Store(nil)
		default:
			children, _ := hdel(p.children.Load(), 0, ix.levelHash(level), level)
			p.children.Store(children)
		}
		n.parent = nil
		ix.nodes--
		n = p
	}
}

func (n *node[S, V]) empty() bool {
	return n.subs.Load() == nil && n.groups.Load() == nil && n.children.Load() == nil &&
		n.plus.Load() == nil && n.hash.Load() == nil
}

// joinLocked makes sub a member of group on n with value v, or replaces its value in place; it
// reports whether sub was a member.
func (n *node[S, V]) joinLocked(group string, sub S, v V) bool {
	var groups []SharedGroup[S, V]
	if p := n.groups.Load(); p != nil {
		groups = *p
	}
	i := slices.IndexFunc(groups, func(g SharedGroup[S, V]) bool { return g.Group == group })
	if i < 0 {
		groups = append(slices.Clip(groups), SharedGroup[S, V]{Group: group, Filter: n.filter, Members: []Member[S, V]{{sub, v}}})
		n.groups.Store(&groups)
		return false
	}
	members := groups[i].Members
	j := slices.IndexFunc(members, func(m Member[S, V]) bool { return m.Sub == sub })
	if j >= 0 {
		members = slices.Clone(members)
		members[j].V = v
	} else {
		members = append(slices.Clip(members), Member[S, V]{sub, v})
	}
	groups = slices.Clone(groups)
	groups[i].Members = members
	n.groups.Store(&groups)
	return j >= 0
}

// leaveLocked removes sub from group on n; it reports whether sub was a member. A group left empty
// is removed, and the group list is set to nil when none is left.
func (n *node[S, V]) leaveLocked(group string, sub S) bool {
	p := n.groups.Load()
	if p == nil {
		return false
	}
	groups := *p
	i := slices.IndexFunc(groups, func(g SharedGroup[S, V]) bool { return g.Group == group })
	if i < 0 {
		return false
	}
	members := groups[i].Members
	j := slices.IndexFunc(members, func(m Member[S, V]) bool { return m.Sub == sub })
	if j < 0 {
		return false
	}
	switch {
	case len(members) > 1:
		groups = slices.Clone(groups)
		groups[i].Members = slices.Delete(slices.Clone(members), j, j+1)
	case len(groups) > 1:
		groups = slices.Delete(slices.Clone(groups), i, i+1)
	default:
		n.groups.Store(nil)
		return true
	}
	n.groups.Store(&groups)
	return true
}

// Match reports the subscriptions whose filter matches the topic name:
//
//   - fn(filter, sub, v) once for each non-shared subscription, so a subscriber with several
//     matching filters is called once per filter (the broker merges);
//   - group(g) once for each shared group (group name and filter) with a matching filter; g.Members
//     is the index's own slice: the callee must not modify or retain it.
//
// Either callback may be nil. name should be valid (ValidateName); Match does not check it. A filter
// starting with a wildcard does not match a name starting with '$' [MQTT-4.7.2-1].
//
// Match takes no lock and does not allocate. Callbacks run with no lock held and may call any method
// of the index; what they see of concurrent changes is described on Index.
func (ix *Index[S, V]) Match(name string, fn func(filter string, sub S, v V), group func(g SharedGroup[S, V])) {
	ix.walk(ix.root, name, false, IsSystem(name), func(n *node[S, V]) bool {
		if fn != nil {
			if subs := n.subs.Load(); subs != nil {
				eachSub(subs, n.filter, fn)
			}
		}
		if group != nil {
			if groups := n.groups.Load(); groups != nil {
				for _, g := range *groups {
					group(g)
				}
			}
		}
		return false
	})
}

// eachSub calls fn(filter, sub, v) for every subscriber in n. It is heach with filter passed
// through: a closure capturing fn would make fn escape, and Match allocate.
func eachSub[S comparable, V any](n *hnode[S, V], filter string, fn func(filter string, sub S, v V)) {
	for i := range n.slots {
		if s := &n.slots[i]; s.sub != nil {
			eachSub(s.sub, filter, fn)
		} else {
			fn(filter, s.key, s.val)
		}
	}
}

// HasMatch reports whether any subscription, shared or not, matches the topic name: Match with an
// early exit, for a PUBACK's No Matching Subscribers (0x10) or for routing decisions. It takes no
// lock and does not allocate.
func (ix *Index[S, V]) HasMatch(name string) bool {
	return ix.walk(ix.root, name, false, IsSystem(name), func(n *node[S, V]) bool {
		return n.subs.Load() != nil || n.groups.Load() != nil
	})
}

// walk calls visit for every node below n whose filter matches name, until visit returns true, and
// reports whether it did. n has matched the levels before rest; done means there are none left.
// dollar skips the wildcard children: it is set at the root for a name starting with '$'.
//
// Every node is reached by one path only, so each is visited at most once: that is what makes Match
// report a subscription once.
func (ix *Index[S, V]) walk(n *node[S, V], rest string, done, dollar bool, visit func(*node[S, V]) bool) bool {
	if h := n.hash.Load(); h != nil && !dollar && visit(h) {
		return true // '#' matches this level and below, and the parent level ("a/#" matches "a")
	}
	if done {
		return visit(n)
	}
	level, rest, more := cut(rest)
	if children := n.children.Load(); children != nil {
		if c, _ := hget(children, ix.levelHash(level), level); c != nil && ix.walk(c, rest, !more, false, visit) {
			return true
		}
	}
	if p := n.plus.Load(); p != nil && !dollar && ix.walk(p, rest, !more, false, visit) {
		return true
	}
	return false
}

// Len returns the number of subscriptions, each shared group membership counted as one.
func (ix *Index[S, V]) Len() int { return int(ix.count.Load()) }

// Filters returns, sorted, every distinct filter with at least one subscription: the filter itself
// for non-shared subscriptions, "$share/<group>/<filter>" for each shared group. The cluster route
// table resynchronises from it.
func (ix *Index[S, V]) Filters() []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []string
	var collect func(n *node[S, V])
	collect = func(n *node[S, V]) {
		if n.subs.Load() != nil {
			out = append(out, n.filter)
		}
		if groups := n.groups.Load(); groups != nil {
			for _, g := range *groups {
				out = append(out, Share{Group: g.Group, Filter: g.Filter}.String())
			}
		}
		if children := n.children.Load(); children != nil {
			heach(children, func(_ string, c *node[S, V]) { collect(c) })
		}
		if p := n.plus.Load(); p != nil {
			collect(p)
		}
		if h := n.hash.Load(); h != nil {
			collect(h)
		}
	}
	collect(ix.root)
	slices.Sort(out)
	return out
}

// FiltersOf returns, sorted, the filters sub is subscribed to, as they were passed to Subscribe.
func (ix *Index[S, V]) FiltersOf(sub S) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return slices.Sorted(ix.bySub[sub].all())
}

// filterSet is the reverse index's set of one subscriber's filters: a slice while small, since most
// clients have a handful, and a map beyond, for a replica in the route table that has thousands.
// The zero filterSet is empty. Callers add only absent filters and remove only present ones.
type filterSet struct {
	list []string
	set  map[string]struct{}
}

const filterSetSmall = 16

func (fs filterSet) len() int { return len(fs.list) + len(fs.set) }

func (fs filterSet) add(f string) filterSet {
	switch {
	case fs.set != nil:
		fs.set[f] = struct{}{}
	case len(fs.list) < filterSetSmall:
		fs.list = append(fs.list, f)
	default:
		fs.set = make(map[string]struct{}, 2*filterSetSmall)
		for _, g := range fs.list {
			fs.set[g] = struct{}{}
		}
		fs.set[f] = struct{}{}
		fs.list = nil
	}
	return fs
}

func (fs filterSet) remove(f string) filterSet {
	if fs.set != nil {
		delete(fs.set, f)
		return fs
	}
	if i := slices.Index(fs.list, f); i >= 0 {
		last := len(fs.list) - 1
		fs.list[i] = fs.list[last]
		fs.list[last] = ""
		fs.list = fs.list[:last]
	}
	return fs
}

func (fs filterSet) all() iter.Seq[string] {
	if fs.set != nil {
		return maps.Keys(fs.set)
	}
	return slices.Values(fs.list)
}
