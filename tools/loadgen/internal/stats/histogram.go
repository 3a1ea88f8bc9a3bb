// Package stats owns the load generator's measurements: a cheap log-linear latency
// histogram and the per-subscriber accounting of loss, duplicates and reordering.
// Nothing here is safe for concurrent use: each subscriber owns its own values, and
// they are merged after its goroutine has stopped.
package stats

import (
	"math"
	"math/bits"
)

// subBits sets the histogram's precision: each power of two is split into 2^subBits
// linear buckets, so a bucket is at most 1/128 (0.8%) wide relative to its values.
const subBits = 7

// maxValue is the largest value recorded as itself (2^41-1 ns, about 36 minutes);
// larger values are clamped into the last bucket but still count towards Max.
const maxValue = 1<<41 - 1

const nBuckets = (41-subBits)<<subBits + 1<<subBits

// Histogram is an HDR-style log-linear histogram of non-negative int64 values (the tool
// records nanoseconds). Record is a few instructions and never allocates; the zero
// value is empty and ready to use. It is about 35 KiB.
type Histogram struct {
	counts [nBuckets]uint64
	n      uint64
	min    int64
	max    int64
	sum    float64
}

// bucket maps v (0 <= v <= maxValue) to its bucket index. Values below 2^subBits get a
// bucket each; above that, the top subBits+1 significant bits select the bucket.
func bucket(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits - 1
	return shift<<subBits + int(v>>shift)
}

// bucketHigh is the largest value that maps to bucket i.
func bucketHigh(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	shift := i>>subBits - 1
	mant := int64(i&(1<<subBits-1) | 1<<subBits)
	return (mant+1)<<shift - 1
}

// Record adds one value. Negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	if v > maxValue {
		v = maxValue
	}
	h.counts[bucket(v)]++
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
	for i, c := range o.counts {
		h.counts[i] += c
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest recorded value, exactly (0 when empty).
func (h *Histogram) Min() int64 { return h.min }

// Max is the largest recorded value, exactly (0 when empty).
func (h *Histogram) Max() int64 { return h.max }

// Mean is the exact mean of the recorded values (0 when empty).
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q in [0, 1]: the highest value of the bucket
// that holds the ceil(q*n)-th smallest value, clamped to [Min, Max]. So it is never
// below the true quantile and at most 0.8% above it. 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			v := bucketHigh(i)
			if v > h.max {
				v = h.max
			}
			if v < h.min {
				v = h.min
			}
			return v
		}
	}
	return h.max
}
