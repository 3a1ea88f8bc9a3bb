package topic

import (
	"math/bits"
	"slices"
)

// hamt.go holds a persistent hash array mapped trie: an immutable map whose updates return a new root
// and share every untouched node with the old one. The index keeps a trie node's children and its
// subscribers in these, behind atomic pointers, so that readers walk a consistent version of each
// without a lock while the (single) writer builds the next one.
//
// An update copies one node per level, O(log32 n), where a copy-on-write Go map or slice would copy
// all n entries: a node with 100k children ("devices/<id>/...") or a filter with 100k subscribers
// ("broadcast/#") stays cheap to change. A lookup costs one hash of the key plus a popcount per level.
//
// A nil *hnode is the empty map. Invariants, kept by hset and hdel: a node is never empty; a node
// below the root holds at least two leaves in its subtree (one that would hold a single leaf is
// replaced by that leaf). So a map is empty exactly when its root is nil, and a deleted entry leaves
// no node behind.

const (
	hBits = 5 // bits of hash consumed per level: 32-way nodes
	hMask = 1<<hBits - 1
)

// hnode is an immutable trie node. Below 64 bits of hash it is bitmap-indexed: bit i of bitmap is set
// when the slot for hash chunk i exists, and slots holds the existing ones in order. Past 64 bits
// (depth 13) it is a collision node: bitmap is 0 and slots lists leaves with one hash.
type hnode[K comparable, V any] struct {
	bitmap uint32
	slots  []hslot[K, V]
}

// hslot is a subtree when sub != nil, a leaf otherwise.
type hslot[K comparable, V any] struct {
	sub  *hnode[K, V]
	hash uint64
	key  K
	val  V
}

// hpos returns the bit of hash's chunk at shift and the index its slot has (or would have) in a node
// with bitmap.
func hpos(bitmap uint32, hash uint64, shift uint) (bit uint32, idx int) {
	bit = 1 << ((hash >> shift) & hMask)
	return bit, bits.OnesCount32(bitmap & (bit - 1))
}

// hget returns the value for key, whose hash is hash.
func hget[K comparable, V any](n *hnode[K, V], hash uint64, key K) (v V, ok bool) {
	for shift := uint(0); n != nil; shift += hBits {
		if shift >= 64 {
			for i := range n.slots {
				if n.slots[i].key == key {
					return n.slots[i].val, true
				}
			}
			return v, false
		}
		bit, idx := hpos(n.bitmap, hash, shift)
		if n.bitmap&bit == 0 {
			return v, false
		}
		s := &n.slots[idx]
		if s.sub == nil {
			if s.hash == hash && s.key == key {
				return s.val, true
			}
			return v, false
		}
		n = s.sub
	}
	return v, false
}

// hset returns n with key set to val, and whether key was present.
func hset[K comparable, V any](n *hnode[K, V], shift uint, hash uint64, key K, val V) (*hnode[K, V], bool) {
	leaf := hslot[K, V]{hash: hash, key: key, val: val}
	if n == nil {
		return hsingle(leaf, shift), false
	}
	if shift >= 64 {
		for i := range n.slots {
			if n.slots[i].key == key {
				c := n.clone()
				c.slots[i] = leaf
				return c, true
			}
		}
		return &hnode[K, V]{slots: append(slices.Clip(n.slots), leaf)}, false
	}
	bit, idx := hpos(n.bitmap, hash, shift)
	if n.bitmap&bit == 0 {
		return &hnode[K, V]{bitmap: n.bitmap | bit, slots: slices.Insert(slices.Clip(n.slots), idx, leaf)}, false
	}
	s := &n.slots[idx]
	var repl hslot[K, V]
	existed := false
	switch {
	case s.sub != nil:
		var sub *hnode[K, V]
		sub, existed = hset(s.sub, shift+hBits, hash, key, val)
		repl = hslot[K, V]{sub: sub}
	case s.hash == hash && s.key == key:
		repl, existed = leaf, true
	default:
		repl = hslot[K, V]{sub: hpair(*s, leaf, shift+hBits)}
	}
	c := n.clone()
	c.slots[idx] = repl
	return c, existed
}

// hsingle returns a node at shift holding only leaf.
func hsingle[K comparable, V any](leaf hslot[K, V], shift uint) *hnode[K, V] {
	n := &hnode[K, V]{slots: []hslot[K, V]{leaf}}
	if shift < 64 {
		n.bitmap, _ = hpos(0, leaf.hash, shift)
	}
	return n
}

// hpair returns a node at shift holding the leaves a and b, whose hashes agree below shift.
func hpair[K comparable, V any](a, b hslot[K, V], shift uint) *hnode[K, V] {
	if shift >= 64 {
		return &hnode[K, V]{slots: []hslot[K, V]{a, b}}
	}
	ia, ib := (a.hash>>shift)&hMask, (b.hash>>shift)&hMask
	switch {
	case ia == ib:
		return &hnode[K, V]{bitmap: 1 << ia, slots: []hslot[K, V]{{sub: hpair(a, b, shift+hBits)}}}
	case ia > ib:
		a, b, ia, ib = b, a, ib, ia
	}
	return &hnode[K, V]{bitmap: 1<<ia | 1<<ib, slots: []hslot[K, V]{a, b}}
}

// hdel returns n without key, and whether key was present. The result is nil when it is empty.
func hdel[K comparable, V any](n *hnode[K, V], shift uint, hash uint64, key K) (*hnode[K, V], bool) {
	if n == nil {
		return nil, false
	}
	if shift >= 64 {
		for i := range n.slots {
			if n.slots[i].key == key {
				if len(n.slots) == 1 {
					return nil, true
				}
				return &hnode[K, V]{slots: slices.Delete(slices.Clone(n.slots), i, i+1)}, true
			}
		}
		return n, false
	}
	bit, idx := hpos(n.bitmap, hash, shift)
	if n.bitmap&bit == 0 {
		return n, false
	}
	s := &n.slots[idx]
	if s.sub == nil {
		if s.hash != hash || s.key != key {
			return n, false
		}
		if len(n.slots) == 1 {
			return nil, true
		}
		return &hnode[K, V]{bitmap: n.bitmap &^ bit, slots: slices.Delete(slices.Clone(n.slots), idx, idx+1)}, true
	}
	sub, ok := hdel(s.sub, shift+hBits, hash, key)
	if !ok {
		return n, false
	}
	// By the invariant sub is not nil: s.sub held two leaves or more.
	c := n.clone()
	if len(sub.slots) == 1 && sub.slots[0].sub == nil {
		c.slots[idx] = sub.slots[0] // pull a lone leaf up, to keep the invariant
	} else {
		c.slots[idx] = hslot[K, V]{sub: sub}
	}
	return c, true
}

func (n *hnode[K, V]) clone() *hnode[K, V] {
	return &hnode[K, V]{bitmap: n.bitmap, slots: slices.Clone(n.slots)}
}

// heach calls fn for every entry. (Index.Match has its own copy, eachSub, that needs no closure.)
func heach[K comparable, V any](n *hnode[K, V], fn func(K, V)) {
	for i := range n.slots {
		if s := &n.slots[i]; s.sub != nil {
			heach(s.sub, fn)
		} else {
			fn(s.key, s.val)
		}
	}
}

// hlen counts the entries; O(n), for tests and invariant checks.
func hlen[K comparable, V any](n *hnode[K, V]) int {
	if n == nil {
		return 0
	}
	c := 0
	for i := range n.slots {
		if s := &n.slots[i]; s.sub != nil {
			c += hlen(s.sub)
		} else {
			c++
		}
	}
	return c
}
