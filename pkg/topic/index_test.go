package topic

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// result is one callback of Index.Match, flattened for comparison.
type result string

func subResult(filter string, sub, v int) result {
	return result(fmt.Sprintf("%s %d=%d", filter, sub, v))
}

func groupResult(g SharedGroup[int, int]) result {
	var b strings.Builder
	fmt.Fprintf(&b, "$share/%s/%s", g.Group, g.Filter)
	for _, m := range g.Members {
		fmt.Fprintf(&b, " %d=%d", m.Sub, m.V)
	}
	return result(b.String())
}

// matchAll returns the callbacks of ix.Match(name), sorted.
func matchAll(ix *Index[int, int], name string) []result {
	var out []result
	ix.Match(name,
		func(filter string, sub, v int) { out = append(out, subResult(filter, sub, v)) },
		func(g SharedGroup[int, int]) { out = append(out, groupResult(g)) })
	slices.Sort(out)
	return out
}

// checkIndex verifies the index's invariants: no empty node below the root, nodes counted, links
// consistent, Len and the reverse index agreeing with the trie.
func checkIndex[S comparable, V any](t *testing.T, ix *Index[S, V]) {
	t.Helper()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	nodes, subs := 0, 0
	perSub := map[S]int{}
	var walk func(n *node[S, V])
	walk = func(n *node[S, V]) {
		if n != ix.root {
			nodes++
			if n.empty() {
				t.Fatalf("empty node %q not pruned", n.filter)
			}
			if n.parent == nil {
				t.Fatalf("node %q has no parent", n.filter)
			}
		}
		if s := n.subs.Load(); s != nil {
			checkHAMT(t, s, 0, 0, true)
			subs += hlen(s)
			heach(s, func(sub S, _ V) { perSub[sub]++ })
		}
		if g := n.groups.Load(); g != nil {
			if len(*g) == 0 {
				t.Fatalf("node %q has an empty group list", n.filter)
			}
			for _, g := range *g {
				if len(g.Members) == 0 || g.Filter != n.filter {
					t.Fatalf("group %+v on node %q", g, n.filter)
				}
				subs += len(g.Members)
				for _, m := range g.Members {
					perSub[m.Sub]++
				}
			}
		}
		if c := n.children.Load(); c != nil {
			checkHAMT(t, c, 0, 0, true)
			heach(c, func(level string, c *node[S, V]) {
				if c.parent != n || c.level() != level {
					t.Fatalf("child %q of %q: parent or level wrong", level, n.filter)
				}
				walk(c)
			})
		}
		for level, c := range map[string]*node[S, V]{"+": n.plus.Load(), "#": n.hash.Load()} {
			if c != nil {
				if c.parent != n || c.level() != level {
					t.Fatalf("wildcard child of %q: wrong parent", n.filter)
				}
				walk(c)
			}
		}
	}
	walk(ix.root)
	if nodes != ix.nodes {
		t.Fatalf("%d nodes in the trie, %d counted", nodes, ix.nodes)
	}
	if subs != int(ix.count.Load()) {
		t.Fatalf("%d subscriptions in the trie, Len says %d", subs, ix.count.Load())
	}
	if len(perSub) != len(ix.bySub) {
		t.Fatalf("%d subscribers in the trie, %d in the reverse index", len(perSub), len(ix.bySub))
	}
	for sub, n := range perSub {
		if fs := ix.bySub[sub]; fs.len() != n || fs.set != nil && fs.list != nil {
			t.Fatalf("subscriber %v: %d subscriptions in the trie, %d in the reverse index", sub, n, fs.len())
		}
	}
}

func TestIndexOverlapping(t *testing.T) {
	ix := NewIndex[int, int]()
	for i, f := range []string{"sport/tennis/player1", "sport/tennis/+", "sport/#", "#", "+/+/+", "sport/tennis/player1/#", "sport/+"} {
		if existed, err := ix.Subscribe(f, 1, i); err != nil || existed {
			t.Fatalf("Subscribe(%q) = %v, %v", f, existed, err)
		}
	}
	if _, err := ix.Subscribe("sport/#", 2, 20); err != nil {
		t.Fatal(err)
	}
	got := matchAll(ix, "sport/tennis/player1")
	want := []result{
		subResult("#", 1, 3), subResult("+/+/+", 1, 4), subResult("sport/#", 1, 2), subResult("sport/#", 2, 20),
		subResult("sport/tennis/+", 1, 1), subResult("sport/tennis/player1", 1, 0), subResult("sport/tennis/player1/#", 1, 5),
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Match:\n got %q\nwant %q", got, want)
	}
	// Replacing keeps one subscription and reports the new value.
	if existed, _ := ix.Subscribe("sport/#", 2, 21); !existed {
		t.Fatal("re-subscribe did not report existed")
	}
	if got := matchAll(ix, "sport"); !slices.Equal(got, []result{subResult("#", 1, 3), subResult("sport/#", 1, 2), subResult("sport/#", 2, 21)}) {
		t.Fatalf("Match(sport) = %q", got)
	}
	if got := matchAll(ix, "$SYS/tennis/player1"); got != nil {
		t.Fatalf("wildcards matched a $ topic: %q", got)
	}
	if ix.Len() != 8 {
		t.Fatalf("Len = %d, want 8", ix.Len())
	}
	if !ix.HasMatch("sport") || ix.HasMatch("$SYS") || !ix.HasMatch("x") {
		t.Fatal("HasMatch wrong")
	}
	if !ix.Unsubscribe("#", 1) || ix.Unsubscribe("#", 1) || ix.HasMatch("x") {
		t.Fatal("Unsubscribe(#) wrong")
	}
	checkIndex(t, ix)
}

func TestIndexShared(t *testing.T) {
	ix := NewIndex[int, int]()
	sub := func(f string, s, v int) bool {
		t.Helper()
		existed, err := ix.Subscribe(f, s, v)
		if err != nil {
			t.Fatal(err)
		}
		return existed
	}
	sub("$share/g/sport/+", 1, 10)
	sub("$share/g/sport/+", 2, 20)
	sub("$share/g/sport/+", 3, 30)
	sub("$share/h/sport/+", 1, 11)
	sub("$share/g/sport/#", 4, 40)
	sub("sport/+", 1, 12) // the same filter, not shared: independent
	if !sub("$share/g/sport/+", 2, 21) {
		t.Fatal("re-joining did not report existed")
	}
	got := matchAll(ix, "sport/tennis")
	want := []result{"$share/g/sport/+ 1=10 2=21 3=30", "$share/g/sport/# 4=40", "$share/h/sport/+ 1=11", subResult("sport/+", 1, 12)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Match:\n got %q\nwant %q", got, want)
	}
	// Leaving keeps the order of the others.
	if !ix.Unsubscribe("$share/g/sport/+", 1) || ix.Unsubscribe("$share/g/sport/+", 1) || ix.Unsubscribe("$share/x/sport/+", 2) {
		t.Fatal("Unsubscribe of a member wrong")
	}
	sub("$share/g/sport/+", 1, 13)
	if got := matchAll(ix, "sport/x"); !slices.Contains(got, "$share/g/sport/+ 2=21 3=30 1=13") {
		t.Fatalf("member order after leave and join: %q", got)
	}
	wantFilters := []string{"$share/g/sport/#", "$share/g/sport/+", "$share/h/sport/+", "sport/+"}
	if got := ix.Filters(); !slices.Equal(got, wantFilters) {
		t.Fatalf("Filters = %q, want %q", got, wantFilters)
	}
	if got := ix.FiltersOf(1); !slices.Equal(got, []string{"$share/g/sport/+", "$share/h/sport/+", "sport/+"}) {
		t.Fatalf("FiltersOf(1) = %q", got)
	}
	if n := ix.UnsubscribeAll(1); n != 3 {
		t.Fatalf("UnsubscribeAll = %d, want 3", n)
	}
	if got := matchAll(ix, "sport/x"); !slices.Equal(got, []result{"$share/g/sport/# 4=40", "$share/g/sport/+ 2=21 3=30"}) {
		t.Fatalf("after UnsubscribeAll: %q", got)
	}
	// A shared group's filter does not match $ topics through a leading wildcard either.
	sub("$share/g/#", 5, 50)
	if ix.HasMatch("$SYS/x") || !ix.HasMatch("x") {
		t.Fatal("shared '#' and $ topics")
	}
	checkIndex(t, ix)
	for _, s := range []int{2, 3, 4, 5} {
		ix.UnsubscribeAll(s)
	}
	if ix.Len() != 0 || ix.nodes != 0 || !ix.root.empty() || len(ix.bySub) != 0 {
		t.Fatalf("not empty after removing everyone: Len %d, %d nodes", ix.Len(), ix.nodes)
	}
}

func TestIndexInvalid(t *testing.T) {
	ix := NewIndex[int, int]()
	for _, f := range []string{"", "a/#/b", "a+", "$share/g", "$share//a", "a\x00"} {
		_, err := ix.Subscribe(f, 1, 1)
		if !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidFilter", f, err)
		}
		if ix.Unsubscribe(f, 1) {
			t.Errorf("Unsubscribe(%q) = true", f)
		}
	}
	if ix.Len() != 0 || ix.nodes != 0 {
		t.Fatal("invalid filters left something behind")
	}
}

// TestIndexCopiesFilter: the codec hands out strings that alias a packet buffer; the index must not
// keep them.
func TestIndexCopiesFilter(t *testing.T) {
	ix := NewIndex[int, int]()
	buf := []byte("$share/grp/a/b/+")
	if _, err := ix.Subscribe(unsafe.String(&buf[0], len(buf)), 1, 1); err != nil {
		t.Fatal(err)
	}
	buf2 := []byte("x/y")
	if _, err := ix.Subscribe(unsafe.String(&buf2[0], len(buf2)), 1, 1); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXXXXXXXXXX")
	copy(buf2, "zzz")
	if got := matchAll(ix, "a/b/c"); !slices.Equal(got, []result{"$share/grp/a/b/+ 1=1"}) {
		t.Fatalf("after the buffer changed: %q", got)
	}
	if got := ix.Filters(); !slices.Equal(got, []string{"$share/grp/a/b/+", "x/y"}) {
		t.Fatalf("Filters after the buffer changed: %q", got)
	}
	if !ix.Unsubscribe("x/y", 1) || !ix.Unsubscribe("$share/grp/a/b/+", 1) || ix.nodes != 0 {
		t.Fatal("could not unsubscribe")
	}
}

func TestIndexNilCallbacks(t *testing.T) {
	ix := NewIndex[int, int]()
	ix.Subscribe("a", 1, 1)
	ix.Subscribe("$share/g/a", 1, 1)
	ix.Match("a", nil, nil)
	n := 0
	ix.Match("a", func(string, int, int) { n++ }, nil)
	ix.Match("a", nil, func(SharedGroup[int, int]) { n += 10 })
	if n != 11 {
		t.Fatalf("n = %d, want 11", n)
	}
}

// TestIndexCallbackMayMutate: Match holds no lock while calling back.
func TestIndexCallbackMayMutate(t *testing.T) {
	ix := NewIndex[int, int]()
	for i := range 10 {
		ix.Subscribe("a/+", i, i)
	}
	calls := 0
	ix.Match("a/b", func(f string, sub, _ int) {
		calls++
		ix.Unsubscribe(f, sub)
		ix.Subscribe("a/#", sub, 0)
	}, nil)
	if calls != 10 {
		t.Fatalf("%d calls, want 10", calls)
	}
	if got := ix.Filters(); !slices.Equal(got, []string{"a/#"}) {
		t.Fatalf("Filters = %q", got)
	}
	checkIndex(t, ix)
}

// randFilter and randName draw from a small alphabet so that filters and names often overlap.
func randLevel(r *rand.Rand) string {
	return [...]string{"a", "b", "c", "", "$x"}[r.IntN(5)]
}

func randName(r *rand.Rand) string {
	levels := make([]string, 1+r.IntN(4))
	for i := range levels {
		levels[i] = randLevel(r)
	}
	if levels[0] == "" && len(levels) == 1 {
		levels[0] = "a"
	}
	return strings.Join(levels, "/")
}

func randFilter(r *rand.Rand) string {
	levels := make([]string, 1+r.IntN(4))
	for i := range levels {
		switch r.IntN(6) {
		case 0:
			levels[i] = "+"
		case 1:
			if i == len(levels)-1 {
				levels[i] = "#"
				break
			}
			fallthrough
		default:
			levels[i] = randLevel(r)
		}
	}
	f := strings.Join(levels, "/")
	if f == "" {
		f = "a"
	}
	if r.IntN(4) == 0 {
		f = "$share/" + [...]string{"g", "h"}[r.IntN(2)] + "/" + f
	}
	return f
}

// model is the brute-force reference: (filter as subscribed, sub) → value, plus the join order of
// every shared group's members.
type model struct {
	subs  map[[2]any]int
	order map[string][]int // "$share/g/f" → members in join order
}

func (m *model) subscribe(f string, sub, v int) bool {
	k := [2]any{f, sub}
	_, existed := m.subs[k]
	m.subs[k] = v
	if s, shared, _ := ParseShare(f); shared && !existed {
		m.order[s.String()] = append(m.order[s.String()], sub)
	}
	return existed
}

func (m *model) unsubscribe(f string, sub int) bool {
	k := [2]any{f, sub}
	_, existed := m.subs[k]
	delete(m.subs, k)
	if s, shared, _ := ParseShare(f); shared && existed {
		o := m.order[s.String()]
		o = slices.Delete(o, slices.Index(o, sub), slices.Index(o, sub)+1)
		m.order[s.String()] = o
		if len(o) == 0 {
			delete(m.order, s.String())
		}
	}
	return existed
}

func (m *model) match(name string) []result {
	var out []result
	for k, v := range m.subs {
		f, sub := k[0].(string), k[1].(int)
		if _, shared, _ := ParseShare(f); !shared && Match(f, name) {
			out = append(out, subResult(f, sub, v))
		}
	}
	for key, members := range m.order {
		s, _, _ := ParseShare(key)
		if !Match(s.Filter, name) {
			continue
		}
		g := SharedGroup[int, int]{Group: s.Group, Filter: s.Filter}
		for _, sub := range members {
			g.Members = append(g.Members, Member[int, int]{sub, m.subs[[2]any{key, sub}]})
		}
		out = append(out, groupResult(g))
	}
	slices.Sort(out)
	return out
}

// TestIndexDifferential compares Index.Match with a brute force over Match(filter, name) through
// random subscribes and unsubscribes, and checks that churn leaves no node behind.
func TestIndexDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 7))
	ix := NewIndex[int, int]()
	m := &model{subs: map[[2]any]int{}, order: map[string][]int{}}
	for round := range 4 {
		for i := range 3000 {
			f, sub := randFilter(r), r.IntN(6)
			if r.IntN(3) == 0 {
				if got, want := ix.Unsubscribe(f, sub), m.unsubscribe(f, sub); got != want {
					t.Fatalf("Unsubscribe(%q, %d) = %v, want %v", f, sub, got, want)
				}
			} else {
				existed, err := ix.Subscribe(f, sub, i)
				if err != nil {
					t.Fatal(err)
				}
				if want := m.subscribe(f, sub, i); existed != want {
					t.Fatalf("Subscribe(%q, %d) existed = %v, want %v", f, sub, existed, want)
				}
			}
			if i%10 == 0 {
				name := randName(r)
				got, want := matchAll(ix, name), m.match(name)
				if !slices.Equal(got, want) {
					t.Fatalf("round %d op %d: Match(%q):\n got %q\nwant %q", round, i, name, got, want)
				}
				if ix.HasMatch(name) != (len(want) > 0) {
					t.Fatalf("HasMatch(%q) = %v, want %v", name, !(len(want) > 0), len(want) > 0)
				}
			}
		}
		if ix.Len() != len(m.subs) {
			t.Fatalf("Len = %d, want %d", ix.Len(), len(m.subs))
		}
		checkIndex(t, ix)
		// Drain: every other round through Unsubscribe, else through UnsubscribeAll.
		for k := range m.subs {
			f, sub := k[0].(string), k[1].(int)
			if round%2 == 0 {
				if !ix.Unsubscribe(f, sub) {
					t.Fatalf("Unsubscribe(%q, %d) = false", f, sub)
				}
			} else {
				ix.UnsubscribeAll(sub)
			}
			m.unsubscribe(f, sub)
		}
		if ix.Len() != 0 || ix.nodes != 0 || !ix.root.empty() || len(ix.bySub) != 0 || len(ix.Filters()) != 0 {
			t.Fatalf("round %d: after draining, Len %d and %d nodes", round, ix.Len(), ix.nodes)
		}
	}
}

// TestIndexConcurrent runs writers and matchers together (run it with -race). Subscriptions that
// exist for the whole test must be reported exactly once by every Match, and no subscription twice.
func TestIndexConcurrent(t *testing.T) {
	ix := NewIndex[int, int]()
	stable := []string{"a/b/c", "a/+/c", "a/#", "#", "+/b/#", "$share/s/a/b/+"}
	for _, f := range stable {
		if _, err := ix.Subscribe(f, -1, 0); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var writers, matchers sync.WaitGroup
	for w := range 3 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; !stop.Load(); i++ {
				f, sub := randFilter(r), w*10+r.IntN(10) // writers own disjoint subscribers
				if r.IntN(2) == 0 {
					ix.Unsubscribe(f, sub)
				} else if _, err := ix.Subscribe(f, sub, i); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					ix.UnsubscribeAll(sub)
				}
			}
		})
	}
	for range 4 {
		matchers.Go(func() {
			seen := map[string]int{}
			for i := 0; i < 2000 && !t.Failed(); i++ {
				clear(seen)
				ix.Match("a/b/c",
					func(f string, sub, _ int) { seen[fmt.Sprint(f, " ", sub)]++ },
					func(g SharedGroup[int, int]) {
						seen["$share/"+g.Group+"/"+g.Filter]++
						members := map[int]bool{}
						for _, m := range g.Members {
							if members[m.Sub] {
								t.Errorf("member %d twice in %s", m.Sub, g.Group)
							}
							members[m.Sub] = true
						}
						if g.Group == "s" && g.Filter == "a/b/+" && !members[-1] {
							t.Error("stable member missing")
						}
					})
				for k, n := range seen {
					if n != 1 {
						t.Errorf("%s reported %d times", k, n)
					}
				}
				for _, f := range stable {
					if k := fmt.Sprint(f, " ", -1); !strings.HasPrefix(f, "$share/") && seen[k] != 1 {
						t.Errorf("stable %s reported %d times", k, seen[k])
					}
				}
				if !ix.HasMatch("a/b/c") {
					t.Error("HasMatch false")
				}
			}
		})
	}
	matchers.Wait()
	stop.Store(true)
	writers.Wait()
	checkIndex(t, ix)
	for sub := range 30 {
		ix.UnsubscribeAll(sub)
	}
	ix.UnsubscribeAll(-1)
	if ix.Len() != 0 || ix.nodes != 0 {
		t.Fatalf("after removing everyone: Len %d, %d nodes", ix.Len(), ix.nodes)
	}
}

func TestIndexMatchNoAlloc(t *testing.T) {
	ix := NewIndex[int, int]()
	for i, f := range []string{"a/b/c", "a/+/c", "a/#", "#", "+/b/#", "$share/g/a/b/+", "$share/h/#", "x/y"} {
		for sub := range 3 {
			ix.Subscribe(f, sub, i)
		}
	}
	calls, members := 0, 0
	fn := func(string, int, int) { calls++ }
	group := func(g SharedGroup[int, int]) { members += len(g.Members) }
	n := testing.AllocsPerRun(100, func() {
		ix.Match("a/b/c", fn, group)
		ix.Match("a/b/c", func(string, int, int) { calls++ }, nil) // a closure literal, as callers write it
		_ = ix.HasMatch("a/b/c")
		_ = ix.HasMatch("nothing/here")
	})
	if n != 0 {
		t.Fatalf("Match allocates %v times per run", n)
	}
	if calls == 0 || members == 0 {
		t.Fatal("nothing matched")
	}
}

// TestIndexMatchNoAllocBrokerShape repeats TestIndexMatchNoAlloc with the broker's shapes: a pointer
// subscriber and a struct value.
func TestIndexMatchNoAllocBrokerShape(t *testing.T) {
	type session struct{ id string }
	type opts struct {
		QoS     byte
		NoLocal bool
		SubID   uint32
	}
	ix := NewIndex[*session, opts]()
	sessions := []*session{{"a"}, {"b"}, {"c"}}
	for _, f := range []string{"a/b/c", "a/+/c", "a/#", "#", "$share/g/a/b/+"} {
		for _, s := range sessions {
			ix.Subscribe(f, s, opts{QoS: 1})
		}
	}
	var qos int
	n := testing.AllocsPerRun(100, func() {
		ix.Match("a/b/c", func(_ string, s *session, o opts) { qos += int(o.QoS) },
			func(g SharedGroup[*session, opts]) { qos += len(g.Members) })
	})
	if n != 0 || qos == 0 {
		t.Fatalf("Match allocates %v times per run (qos sum %d)", n, qos)
	}
}

// TestIndexReverseIndex covers FiltersOf and UnsubscribeAll past the small-set size, and the rebuild
// of the reverse index after most subscribers are gone.
func TestIndexReverseIndex(t *testing.T) {
	ix := NewIndex[int, struct{}]()
	var want []string
	for i := range 3 * filterSetSmall {
		f := fmt.Sprintf("r/%d/#", i)
		ix.Subscribe(f, -1, struct{}{})
		want = append(want, f)
	}
	slices.Sort(want)
	if got := ix.FiltersOf(-1); !slices.Equal(got, want) {
		t.Fatalf("FiltersOf = %q", got)
	}
	for sub := range 5000 {
		ix.Subscribe(fmt.Sprintf("d/%d", sub), sub, struct{}{})
	}
	for sub := range 4990 {
		if !ix.Unsubscribe(fmt.Sprintf("d/%d", sub), sub) {
			t.Fatal("Unsubscribe failed")
		}
	}
	if ix.peak > 1024 {
		t.Fatalf("reverse index not rebuilt: peak %d, len %d", ix.peak, len(ix.bySub))
	}
	if got := ix.FiltersOf(-1); !slices.Equal(got, want) {
		t.Fatalf("FiltersOf after the rebuild = %q", got)
	}
	if got := ix.FiltersOf(4995); !slices.Equal(got, []string{"d/4995"}) {
		t.Fatalf("FiltersOf(4995) = %q", got)
	}
	if got := ix.FiltersOf(7); len(got) != 0 {
		t.Fatalf("FiltersOf(7) = %q", got)
	}
	checkIndex(t, ix)
	if n := ix.UnsubscribeAll(-1); n != len(want) {
		t.Fatalf("UnsubscribeAll = %d", n)
	}
	if n := ix.UnsubscribeAll(-1); n != 0 {
		t.Fatalf("second UnsubscribeAll = %d", n)
	}
	for sub := 4990; sub < 5000; sub++ {
		ix.UnsubscribeAll(sub)
	}
	if ix.Len() != 0 || ix.nodes != 0 || len(ix.bySub) != 0 {
		t.Fatalf("not empty: Len %d, %d nodes", ix.Len(), ix.nodes)
	}
}
