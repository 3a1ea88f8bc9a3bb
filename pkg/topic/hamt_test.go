package topic

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// checkHAMT verifies the invariants of hamt.go and returns the number of leaves under n.
func checkHAMT[K comparable, V any](t *testing.T, n *hnode[K, V], shift uint, prefix uint64, root bool) int {
	t.Helper()
	if n == nil {
		if !root {
			t.Fatal("nil subnode")
		}
		return 0
	}
	if len(n.slots) == 0 {
		t.Fatal("empty node")
	}
	leaves := 0
	if shift >= 64 {
		if n.bitmap != 0 {
			t.Fatal("collision node with a bitmap")
		}
		for _, s := range n.slots {
			if s.sub != nil || s.hash != prefix {
				t.Fatal("collision node with a subnode or different hashes")
			}
		}
		leaves = len(n.slots)
	} else {
		if bits.OnesCount32(n.bitmap) != len(n.slots) {
			t.Fatalf("bitmap %b for %d slots", n.bitmap, len(n.slots))
		}
		i := 0
		for chunk := uint64(0); chunk <= hMask; chunk++ {
			if n.bitmap&(1<<chunk) == 0 {
				continue
			}
			s := n.slots[i]
			i++
			p := prefix | chunk<<shift
			if s.sub != nil {
				leaves += checkHAMT(t, s.sub, shift+hBits, p, false)
				continue
			}
			// The hash bits consumed so far must lead here (a shift by 64 is 0, so the mask is then all ones).
			if mask := uint64(1)<<min(shift+hBits, 64) - 1; s.hash&mask != p {
				t.Fatalf("leaf with hash %x in the slot for prefix %x at shift %d", s.hash, p, shift)
			}
			leaves++
		}
	}
	if !root && leaves < 2 {
		t.Fatalf("subnode at shift %d with %d leaves", shift, leaves)
	}
	return leaves
}

func TestHAMT(t *testing.T) {
	hashes := map[string]func(int) uint64{
		"good":      func(k int) uint64 { return uint64(k) * 0x9E3779B97F4A7C15 },
		"colliding": func(k int) uint64 { return uint64(k % 7) }, // deep paths, collision nodes
		"high bits": func(k int) uint64 { return uint64(k%5) << 61 },
	}
	for name, hash := range hashes {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var m *hnode[int, int]
			model := map[int]int{}
			for i := range 20000 {
				k := r.IntN(300)
				old := m
				oldLen := hlen(old)
				if r.IntN(3) == 0 {
					var ok bool
					m, ok = hdel(m, 0, hash(k), k)
					_, want := model[k]
					delete(model, k)
					if ok != want {
						t.Fatalf("op %d: hdel(%d) = %v, want %v", i, k, ok, want)
					}
				} else {
					var existed bool
					m, existed = hset(m, 0, hash(k), k, i)
					_, want := model[k]
					model[k] = i
					if existed != want {
						t.Fatalf("op %d: hset(%d) existed = %v, want %v", i, k, existed, want)
					}
				}
				if hlen(old) != oldLen {
					t.Fatalf("op %d modified the previous version", i)
				}
				if i%97 == 0 || len(model) == 0 {
					if n := checkHAMT(t, m, 0, 0, true); n != len(model) {
						t.Fatalf("op %d: %d leaves, want %d", i, n, len(model))
					}
					for k, v := range model {
						if got, ok := hget(m, hash(k), k); !ok || got != v {
							t.Fatalf("op %d: hget(%d) = %d, %v; want %d", i, k, got, ok, v)
						}
					}
					seen := 0
					heach(m, func(k, v int) {
						seen++
						if model[k] != v {
							t.Fatalf("heach: %d → %d, want %d", k, v, model[k])
						}
					})
					if seen != len(model) {
						t.Fatalf("heach saw %d entries, want %d", seen, len(model))
					}
				}
			}
			for k := range model {
				m, _ = hdel(m, 0, hash(k), k)
			}
			if m != nil {
				t.Fatal("emptied map is not nil")
			}
			if _, ok := hget(m, hash(1), 1); ok {
				t.Fatal("hget on nil found something")
			}
		})
	}
}
