package cluster

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
)

// Every claim of a persistent session announces its index entry again, with the same
// subscriptions. A message matched while the cache takes that notice must still find the
// session: otherwise it is acknowledged without being appended to the session's log (a loss the
// chaos test found: one message, one session, at a claim).
func TestIndexChangeNeverHidesAKeptSubscription(t *testing.T) {
	s := newStore(&Cluster{})
	ds := &bus.DurableSubs{Inc: 7, Subs: []bus.DurableSub{{Filter: "chaos/#", QoS: 1}, {Filter: "other/+", QoS: 1}}}
	s.apply(bus.DurableSubsChange{Client: "sess", Subs: ds})

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			again := *ds
			s.apply(bus.DurableSubsChange{Client: "sess", Subs: &again})
		}
	}()
	bm := &bus.Message{Topic: "chaos/p3", QoS: 2}
	missed := 0
	for i := 0; i < 200000; i++ {
		if len(s.match(bm)) != 1 {
			missed++
		}
	}
	stop.Store(true)
	wg.Wait()
	if missed > 0 {
		t.Fatalf("%d of 200000 matches missed a subscription the session kept", missed)
	}

	// A subscription the notice drops does go, and a deleted entry leaves nothing.
	s.apply(bus.DurableSubsChange{Client: "sess", Subs: &bus.DurableSubs{Inc: 7, Subs: []bus.DurableSub{{Filter: "other/+", QoS: 1}}}})
	if len(s.match(bm)) != 0 {
		t.Fatal("a dropped subscription still matches")
	}
	s.apply(bus.DurableSubsChange{Client: "sess"})
	if len(s.match(&bus.Message{Topic: "other/x", QoS: 1})) != 0 || s.indexed() != 0 {
		t.Fatal("a deleted entry still matches")
	}
}
