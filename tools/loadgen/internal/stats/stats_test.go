package stats

import (
	"math"
	"math/rand"
	"sort"
	"testing"
)

func TestBucketBounds(t *testing.T) {
	// Buckets are contiguous and ordered, and every value lies inside its bucket.
	prevHigh := int64(-1)
	for i := 0; i < nBuckets; i++ {
		hi := bucketHigh(i)
		if hi <= prevHigh {
			t.Fatalf("bucket %d high %d <= previous %d", i, hi, prevHigh)
		}
		if bucket(prevHigh+1) != i || bucket(hi) != i {
			t.Fatalf("bucket %d = [%d, %d] but bucket(lo)=%d bucket(hi)=%d", i, prevHigh+1, hi, bucket(prevHigh+1), bucket(hi))
		}
		if lo := prevHigh + 1; lo >= 1<<subBits && float64(hi-lo+1)/float64(lo) > 1.0/(1<<subBits)+1e-12 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d", i, lo, hi, 1<<subBits)
		}
		prevHigh = hi
	}
	if prevHigh != maxValue {
		t.Fatalf("last bucket ends at %d, want %d", prevHigh, int64(maxValue))
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram not zero")
	}
	rng := rand.New(rand.NewSource(1))
	vals := make([]int64, 200000)
	for i := range vals {
		// Log-uniform from 1 µs to 1 s, like real latencies.
		vals[i] = int64(math.Exp(rng.Float64()*math.Log(1e6)) * 1e3)
		h.Record(vals[i])
	}
	sort.Slice(vals, func(a, b int) bool { return vals[a] < vals[b] })
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		rank := int(math.Ceil(q * float64(len(vals))))
		if rank < 1 {
			rank = 1
		}
		exact := vals[rank-1]
		got := h.Quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/(1<<subBits)) {
			t.Errorf("q%.3f: got %d, exact %d", q, got, exact)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] || h.Count() != uint64(len(vals)) {
		t.Errorf("min/max/count: %d %d %d", h.Min(), h.Max(), h.Count())
	}
}

func TestHistogramSmallExact(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	if h.Quantile(0.5) != 50 || h.Quantile(0.99) != 99 || h.Quantile(1) != 100 || h.Mean() != 50.5 {
		t.Fatalf("p50 %d p99 %d max %d mean %f", h.Quantile(0.5), h.Quantile(0.99), h.Quantile(1), h.Mean())
	}
	h.Record(-5)
	if h.Min() != 0 {
		t.Fatalf("negative not clamped: min %d", h.Min())
	}
	h.Record(1 << 50)
	if h.Max() != 1<<50 || h.Quantile(1) != 1<<50 {
		t.Fatalf("huge value: max %d", h.Max())
	}
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for v := int64(0); v < 10000; v++ {
		if v%3 == 0 {
			a.Record(v * 1000)
		} else {
			b.Record(v * 1000)
		}
		all.Record(v * 1000)
	}
	var m Histogram
	m.Merge(&a)
	m.Merge(&b)
	m.Merge(&Histogram{})
	if m != all {
		t.Fatalf("merge differs: n %d/%d min %d/%d max %d/%d", m.n, all.n, m.min, all.min, m.max, all.max)
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Record(int64(i) * 7919 % 50_000_000)
	}
}

func TestTrackerInOrder(t *testing.T) {
	tr := NewTracker(3, 100, nil)
	for seq := 0; seq < 100; seq++ {
		for pub := 0; pub < 3; pub++ {
			if o := tr.Observe(pub, seq, 10, 25); o != New {
				t.Fatalf("pub %d seq %d: %v", pub, seq, o)
			}
		}
	}
	if tr.Received != 300 || tr.Lost() != 0 || tr.Duplicates != 0 || tr.Reordered != 0 || tr.Unexpected != 0 {
		t.Fatalf("%+v lost %d", tr, tr.Lost())
	}
	if tr.Latency.Count() != 300 || tr.Latency.Max() != 15 || tr.First != 25 || tr.Last != 25 {
		t.Fatalf("latency n %d max %d first %d last %d", tr.Latency.Count(), tr.Latency.Max(), tr.First, tr.Last)
	}
}

func TestTrackerLossDupReorder(t *testing.T) {
	tr := NewTracker(2, 10, nil)
	// Publisher 0: 0 1 3 2 4 4 ... nothing else: lost 5..9 (5), one reorder, one dup.
	for i, seq := range []int{0, 1, 3, 2, 4, 4} {
		tr.Observe(0, seq, 0, int64(i+1))
	}
	// Publisher 1: 0 5 1 2 3 4 6 7 8 9: four reordered (1..4 after 5), none lost.
	for _, seq := range []int{0, 5, 1, 2, 3, 4, 6, 7, 8, 9} {
		tr.Observe(1, seq, 0, 100)
	}
	if tr.Received != 15 || tr.Expected() != 20 || tr.Lost() != 5 || tr.Duplicates != 1 || tr.Reordered != 5 {
		t.Fatalf("received %d expected %d lost %d dup %d reordered %d", tr.Received, tr.Expected(), tr.Lost(), tr.Duplicates, tr.Reordered)
	}
	if tr.First != 1 || tr.Last != 100 || tr.Latency.Count() != 15 {
		t.Fatalf("first %d last %d samples %d", tr.First, tr.Last, tr.Latency.Count())
	}
}

func TestTrackerUnexpected(t *testing.T) {
	// Pairwise: subscriber 1 must only hear publisher 1.
	tr := NewTracker(3, 5, func(pub int) bool { return pub == 1 })
	for _, c := range []struct{ pub, seq int }{{0, 0}, {2, 1}, {1, 5}, {1, -1}, {3, 0}, {-1, 0}} {
		if o := tr.Observe(c.pub, c.seq, 0, 0); o != Unexpected {
			t.Errorf("pub %d seq %d: %v, want Unexpected", c.pub, c.seq, o)
		}
	}
	tr.Observe(1, 0, 0, 0)
	if tr.Unexpected != 6 || tr.Expected() != 5 || tr.Lost() != 4 || tr.Received != 1 {
		t.Fatalf("%+v", tr)
	}
}
