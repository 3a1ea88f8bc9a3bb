package stats

// Outcome says what Tracker.Observe made of one delivery.
type Outcome uint8

// Outcomes of Tracker.Observe.
const (
	// New is the first delivery of this (publisher, sequence).
	New Outcome = iota
	// Duplicate means this (publisher, sequence) was delivered before.
	Duplicate
	// Unexpected means the publisher or sequence is not one this subscriber should see:
	// out of range, or another publisher's message in a pairwise topology.
	Unexpected
)

// Tracker accounts for what one subscriber received: which (publisher, sequence)
// pairs arrived, how often, in which order and how late. Publishers number their
// messages 0..n-1.
type Tracker struct {
	n       int
	allowed func(pub int) bool
	pubs    []pubTrack

	// Received counts first deliveries; Duplicates and Reordered count as below,
	// Unexpected counts deliveries that Observe refused.
	Received, Duplicates, Reordered, Unexpected uint64
	// First and Last are the arrival times of the first and last new message.
	First, Last int64
	// Latency holds now-sent of every new message.
	Latency Histogram
}

type pubTrack struct {
	seen   []uint64 // bitmap of sequences, allocated on the first message
	maxSeq int      // highest sequence seen so far, -1 before any
	got    int
}

// NewTracker accounts for messages from publishers 0..pubs-1 with n messages each.
// allowed, if not nil, says which publishers this subscriber should receive from;
// every other publisher's messages are Unexpected.
func NewTracker(pubs, n int, allowed func(pub int) bool) *Tracker {
	t := &Tracker{n: n, allowed: allowed, pubs: make([]pubTrack, pubs)}
	for i := range t.pubs {
		t.pubs[i].maxSeq = -1
	}
	return t
}

// Observe records the delivery of message seq from publisher pub, sent at sentNs and
// received at nowNs (same clock).
//
// A message counts as reordered when a higher sequence from the same publisher arrived
// before it: 0 1 3 2 4 has one reordered message, 0 5 1 2 3 4 has four.
// Duplicates are neither latency samples nor reorderings.
func (t *Tracker) Observe(pub, seq int, sentNs, nowNs int64) Outcome {
	if pub < 0 || pub >= len(t.pubs) || seq < 0 || seq >= t.n || (t.allowed != nil && !t.allowed(pub)) {
		t.Unexpected++
		return Unexpected
	}
	p := &t.pubs[pub]
	if p.seen == nil {
		p.seen = make([]uint64, (t.n+63)/64)
	}
	w, bit := seq>>6, uint64(1)<<(seq&63)
	if p.seen[w]&bit != 0 {
		t.Duplicates++
		return Duplicate
	}
	p.seen[w] |= bit
	p.got++
	if seq < p.maxSeq {
		t.Reordered++
	} else {
		p.maxSeq = seq
	}
	if t.Received == 0 {
		t.First = nowNs
	}
	t.Received++
	t.Last = nowNs
	t.Latency.Record(nowNs - sentNs)
	return New
}

// Expected is how many distinct messages this subscriber should receive.
func (t *Tracker) Expected() uint64 {
	var e uint64
	for i := range t.pubs {
		if t.allowed == nil || t.allowed(i) {
			e += uint64(t.n)
		}
	}
	return e
}

// Lost is Expected minus the distinct messages received.
func (t *Tracker) Lost() uint64 { return t.Expected() - t.Received }
