package load

import (
	"context"
	"fmt"
	"time"

	"github.com/mcloudtt/mcloudtt/tools/loadgen/internal/stats"
)

// waitDelivery waits for delivery: everything arrived, or nothing arrived for -drain
// (once the publishers are done), or the deadline.
func (r *run) waitDelivery(subs []*subscriber, pubsDone <-chan struct{}) {
	var expected int64
	for _, x := range subs {
		expected += int64(x.tr.Expected())
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastN, lastChange := int64(-1), time.Now()
	for r.ctx.Err() == nil {
		var n int64
		for _, x := range subs {
			n += x.got.Load()
		}
		switch {
		case n >= expected:
			return
		case n != lastN:
			lastN, lastChange = n, time.Now()
		case time.Since(lastChange) > r.cfg.Drain:
			select {
			case <-pubsDone:
				return
			default: // publishers still going (paced, or blocked): keep waiting
			}
		}
		select {
		case <-tick.C:
		case <-r.ctx.Done():
		}
	}
}

// shutdown ends the run: it closes every connection and waits for the publishers and
// every read loop to return.
func (r *run) shutdown(cancel context.CancelFunc, clients []*client, pubsDone <-chan struct{}, subs []*subscriber, pubs []*publisher) {
	r.closing.Store(true)
	cancel()
	for _, c := range clients {
		c.close(!r.redis)
	}
	<-pubsDone
	for _, x := range subs {
		<-x.done
	}
	for _, p := range pubs {
		<-p.readerDone
	}
}

// summarize adds up the publishers' counters and the subscribers' trackers into s,
// with the rates and latency quantiles. Everything has stopped by then: the trackers
// and counters can be read without locks.
func (r *run) summarize(s *Summary, subs []*subscriber, pubs []*publisher, pubStart int64) {
	lastPub := tallyPublishers(s, pubs)
	lat, first, last := tallySubscribers(s, subs)
	s.Lost = s.Expected - s.Received
	if s.Unexpected > 0 {
		r.errs.add(fmt.Errorf("%d deliveries with a bad payload or from the wrong publisher", s.Unexpected))
	}
	if lastPub > pubStart {
		s.PubSecs = round(float64(lastPub-pubStart)/1e9, 4)
		s.PubRate = round(float64(s.Sent)/s.PubSecs, 1)
	}
	if last > first && first >= 0 {
		s.DelivSecs = round(float64(last-first)/1e9, 4)
		s.DelivRate = round(float64(s.Received)/(float64(last-first)/1e9), 1)
	}
	if last > pubStart {
		s.DelivRateStart = round(float64(s.Received)/(float64(last-pubStart)/1e9), 1)
	}
	latencyInto(s, lat)
}

// tallyPublishers adds the publishers' sent and acknowledged counts into s and
// returns when the last of them finished.
func tallyPublishers(s *Summary, pubs []*publisher) (lastPub int64) {
	for _, p := range pubs {
		s.Sent += p.sent
		if p.window != nil {
			s.Acked += p.acked.Load()
		}
		lastPub = max(lastPub, p.doneNs.Load())
	}
	return lastPub
}

// tallySubscribers adds the subscribers' trackers into s and returns their merged
// latencies and the first and last delivery times (first is -1 when none arrived).
func tallySubscribers(s *Summary, subs []*subscriber) (lat *stats.Histogram, first, last int64) {
	lat = new(stats.Histogram)
	first = -1
	for _, x := range subs {
		t := x.tr
		s.Expected += int64(t.Expected())
		s.Received += int64(t.Received)
		s.Dup += int64(t.Duplicates)
		s.Reordered += int64(t.Reordered)
		s.Unexpected += int64(t.Unexpected)
		if t.Received > 0 {
			if first < 0 || t.First < first {
				first = t.First
			}
			last = max(last, t.Last)
		}
		lat.Merge(&t.Latency)
	}
	return lat, first, last
}
