package topic

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// benchFilter returns the i-th filter of a fleet of devices under 100 sites: 70% exact, 10% '+' at
// the end, 10% '+' in the middle, 10% '#'.
func benchFilter(i int) string {
	site := i % 100
	switch i % 10 {
	case 7:
		return fmt.Sprintf("site/%d/dev/%d/+", site, i)
	case 8:
		return fmt.Sprintf("site/%d/+/%d/temp", site, i)
	case 9:
		return fmt.Sprintf("site/%d/dev/%d/#", site, i)
	}
	return fmt.Sprintf("site/%d/dev/%d/temp", site, i)
}

// benchIndex returns an index with n subscriptions and 1024 names to publish to, each the topic of
// one subscribed device (one or two matches each, as in a fleet).
func benchIndex(b *testing.B, n int) (*Index[int, int], []string) {
	ix := NewIndex[int, int]()
	for i := range n {
		if _, err := ix.Subscribe(benchFilter(i), i, i); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	names := make([]string, 1024)
	for i := range names {
		d := r.IntN(n)
		names[i] = fmt.Sprintf("site/%d/dev/%d/temp", d%100, d)
	}
	return ix, names
}

var sizes = []int{1, 1000, 100_000}

func BenchmarkIndexMatch(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ix, names := benchIndex(b, n)
			calls := 0
			fn := func(string, int, int) { calls++ }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				ix.Match(names[i&1023], fn, nil)
			}
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}

// BenchmarkIndexMatchFanout: one topic, many subscribers on one filter (a broadcast topic).
func BenchmarkIndexMatchFanout(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ix := NewIndex[int, int]()
			for i := range n {
				ix.Subscribe("broadcast/#", i, i)
			}
			calls := 0
			b.ReportAllocs()
			for b.Loop() {
				ix.Match("broadcast/all", func(string, int, int) { calls++ }, nil)
			}
			b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		})
	}
}

func BenchmarkIndexMatchShared(b *testing.B) {
	ix := NewIndex[int, int]()
	for i := range 100 {
		ix.Subscribe(fmt.Sprintf("$share/workers%d/jobs/+", i%4), i, i)
	}
	members := 0
	b.ReportAllocs()
	for b.Loop() {
		ix.Match("jobs/resize", nil, func(g SharedGroup[int, int]) { members += len(g.Members) })
	}
}

func BenchmarkIndexHasMatch(b *testing.B) {
	ix, names := benchIndex(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ix.HasMatch(names[i&1023])
	}
}

// BenchmarkIndexMatchParallel matches from every P while one goroutine subscribes and unsubscribes
// as fast as it can; churn/s reports how many changes it made meanwhile.
func BenchmarkIndexMatchParallel(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ix, names := benchIndex(b, n)
			var stop atomic.Bool
			var churn atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; !stop.Load(); i++ {
					f := benchFilter(n + i%1000)
					ix.Subscribe(f, -i, i)
					ix.Unsubscribe(f, -i)
					churn.Add(2)
				}
			})
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(97))
				calls := 0
				fn := func(string, int, int) { calls++ }
				for pb.Next() {
					ix.Match(names[i&1023], fn, nil)
					i++
				}
			})
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
			b.ReportMetric(float64(churn.Load())/b.Elapsed().Seconds(), "churn/s")
		})
	}
}

// BenchmarkIndexChurn subscribes and unsubscribes a filter of its own next to n others: the cost of
// a client that comes and goes. One op is a Subscribe plus an Unsubscribe.
func BenchmarkIndexChurn(b *testing.B) {
	for _, n := range []int{1, 100_000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			ix, _ := benchIndex(b, n)
			filters := make([]string, 1024)
			for i := range filters {
				filters[i] = benchFilter(n + i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				f := filters[i&1023]
				ix.Subscribe(f, -1, i)
				ix.Unsubscribe(f, -1)
			}
		})
	}
}

// BenchmarkIndexSubscribeWide adds subscribers to one filter that already has 100k: with a
// copy-on-write slice this would copy them all every time.
func BenchmarkIndexSubscribeWide(b *testing.B) {
	ix := NewIndex[int, int]()
	for i := range 100_000 {
		ix.Subscribe("broadcast/#", i, i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ix.Subscribe("broadcast/#", -1-i%1024, i)
		ix.Unsubscribe("broadcast/#", -1-i%1024)
	}
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Match("sport/+/player1/#", "sport/tennis/player1/score/wimbledon")
	}
}

func BenchmarkValidateFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = ValidateFilter("$share/group/site/+/dev/#")
	}
}

// BenchmarkIndexMemory reports the live heap per subscription of the benchIndex fleet, and after
// removing every subscription (which must return to about nothing).
func BenchmarkIndexMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		before := liveHeap()
		ix, _ := benchIndex(b, n)
		full := liveHeap()
		for i := range n {
			ix.Unsubscribe(benchFilter(i), i)
		}
		empty := liveHeap()
		b.ReportMetric(float64(full-before)/n, "B/sub")
		b.ReportMetric(float64(empty-before), "B-after-unsubscribe-all")
		runtime.KeepAlive(ix)
	}
}

func liveHeap() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
