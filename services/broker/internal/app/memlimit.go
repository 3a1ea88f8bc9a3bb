package app

import (
	"context"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// Heap headroom: how much memory the Go heap may take beyond what is live before it is collected.
//
// Go collects when the heap has grown by GOGC percent (100) of what was live after the last
// collection, and keeps that memory, so a broker holding 100,000 idle connections in 200 MB of
// live heap sits at 400 MB. With BROKER_HEAP_HEADROOM=h the replica sets the runtime's soft memory
// limit, once a second, to everything but the heap, plus the live heap and h percent of it, plus
// headroomFloor: a large heap (many connections) is then collected at h percent growth, while a
// small, busy one keeps GOGC's pace (the floor is far above what GOGC lets it grow to), so
// throughput does not pay for it. A GOMEMLIMIT set by the operator stays the ceiling.
//
// The limit is soft: when the live heap grows faster than the limit follows (a connection storm),
// the runtime collects more often, and caps the collector at half the CPU, rather than fail.

// headroomFloor is the memory a heap may always grow by before a collection.
const headroomFloor = 64 << 20

// headroomInterval is how often the limit follows the live heap.
const headroomInterval = time.Second

var headroomMetrics = []string{
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

// startHeapHeadroom starts keeping the headroom for the life of the process: the memory limit is
// the process's, so the first replica of a process (there is one outside tests) sets it.
func startHeapHeadroom(percent int) {
	if percent <= 0 {
		return
	}
	headroomOnce.Do(func() { go keepHeapHeadroom(context.Background(), percent) })
}

var headroomOnce sync.Once

// keepHeapHeadroom sets the soft memory limit as above until ctx ends, then restores the one it
// found.
func keepHeapHeadroom(ctx context.Context, percent int) {
	ceiling := debug.SetMemoryLimit(-1) // GOMEMLIMIT, or math.MaxInt64 without one
	samples := make([]metrics.Sample, len(headroomMetrics))
	for i, name := range headroomMetrics {
		samples[i].Name = name
	}
	t := time.NewTicker(headroomInterval)
	defer t.Stop()
	defer debug.SetMemoryLimit(ceiling)
	for {
		debug.SetMemoryLimit(headroomLimit(samples, percent, ceiling))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// headroomLimit is the memory limit for the current figures: what is not heap, plus the live heap
// with percent on top, plus headroomFloor, at most ceiling.
func headroomLimit(samples []metrics.Sample, percent int, ceiling int64) int64 {
	metrics.Read(samples)
	var v [6]uint64
	for i := range samples {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return ceiling // a runtime without these metrics: leave the limit alone
		}
		v[i] = samples[i].Value.Uint64()
	}
	live, total, released, objects, unused, free := v[0], v[1], v[2], v[3], v[4], v[5]
	nonHeap := total - released - objects - unused - free
	limit := float64(nonHeap) + float64(live)*(1+float64(percent)/100) + headroomFloor
	if limit >= float64(ceiling) || limit >= math.MaxInt64 {
		return ceiling
	}
	return int64(limit)
}
