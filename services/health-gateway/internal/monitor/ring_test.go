package monitor

import (
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name       string
		live, down []string
		want       []Pair
	}{
		{"none", nil, nil, nil},
		{"one", []string{"a"}, nil, []Pair{{"a", "a"}}},
		{"two", []string{"b", "a"}, nil, []Pair{{"a", "b"}, {"b", "a"}}},
		{"three", []string{"c", "a", "b"}, nil, []Pair{{"a", "b"}, {"b", "c"}, {"c", "a"}}},
		{"duplicates", []string{"a", "a"}, nil, []Pair{{"a", "a"}}},
		{"one of two down", []string{"a"}, []string{"b"}, []Pair{{"a", "a"}, {"a", "b"}, {"b", "a"}}},
		{"first of three down", []string{"b", "c"}, []string{"a"},
			[]Pair{{"b", "c"}, {"c", "b"}, {"c", "a"}, {"a", "c"}}},
		{"middle of three down", []string{"a", "c"}, []string{"b"},
			[]Pair{{"a", "c"}, {"c", "a"}, {"a", "b"}, {"b", "a"}}},
		{"all down", nil, []string{"b", "a"}, []Pair{{"a", "b"}, {"b", "a"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Plan(c.live, c.down)
			if !slices.Equal(got, c.want) {
				t.Fatalf("Plan(%v, %v) = %v, want %v", c.live, c.down, got, c.want)
			}
			// Every live replica publishes once and receives once in the ring.
			if len(c.live) > 0 {
				from, to := map[string]int{}, map[string]int{}
				for _, p := range got {
					from[p.From]++
					to[p.To]++
				}
				for _, r := range sortedUnique(c.live) {
					if from[r] == 0 || to[r] == 0 {
						t.Fatalf("%s is not both a sender and a receiver in %v", r, got)
					}
				}
			}
		})
	}
}
