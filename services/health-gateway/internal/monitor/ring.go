package monitor

import (
	"slices"
	"sort"
)

// Pair is one probe: a message published through replica From must arrive on replica To.
type Pair struct {
	From, To string
}

func (p Pair) String() string { return p.From + " -> " + p.To }

// Plan returns the pairs to probe, so that every live replica publishes once and receives once:
// the ring of live replicas in id order (A->B, B->C, ..., C->A; A->B and B->A for two; A->A for
// one). The cost is one probe per replica, whatever the cluster's size.
//
// A replica whose heartbeats stopped but which the gateway has not forgotten yet is probed too,
// from and to its nearest live predecessor in id order: its heartbeats may have stopped because its
// Redis link is dead while it still accepts devices, or it may be gone; either way the pairs
// through it fail and name it, and the live replicas keep their own ring. With no live replica at
// all, the ring runs over the down ones.
func Plan(live, down []string) []Pair {
	live, down = sortedUnique(live), sortedUnique(down)
	if len(live) == 0 {
		live, down = down, nil
	}
	var out []Pair
	for i, r := range live {
		out = append(out, Pair{r, live[(i+1)%len(live)]})
	}
	for _, d := range down {
		// The nearest live replica before d in id order, circularly.
		i := sort.SearchStrings(live, d)
		prev := live[(i-1+len(live))%len(live)]
		out = append(out, Pair{prev, d}, Pair{d, prev})
	}
	return out
}

func sortedUnique(ids []string) []string {
	s := slices.Clone(ids)
	slices.Sort(s)
	return slices.Compact(s)
}
