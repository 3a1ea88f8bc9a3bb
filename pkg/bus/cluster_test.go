package bus

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// TestCluster runs two replicas on a three-master Redis Cluster: their inbound channels sit on
// different nodes, messages flow both ways with SPUBLISH/SSUBSCRIBE only, and heartbeats (on a
// third slot) reach a watcher.
func TestCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	names := NewNames("")

	// Two replica ids whose channels hash to different nodes.
	var ids []string
	nodes := map[*redistest.Server]bool{}
	for i := 1; len(ids) < 2; i++ {
		id := "r" + strconv.Itoa(i)
		n := c.NodeFor(t, names.Inbound(id))
		if !nodes[n] {
			nodes[n] = true
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		in, _ := redistest.Do(c.Nodes[0].Addr(), "", "CLUSTER", "KEYSLOT", names.Inbound(id))
		ctl, _ := redistest.Do(c.Nodes[0].Addr(), "", "CLUSTER", "KEYSLOT", names.Control(id))
		routes, _ := redistest.Do(c.Nodes[0].Addr(), "", "CLUSTER", "KEYSLOT", names.Routes(id))
		if in != ctl || in != routes {
			t.Fatalf("%s: inbound slot %s, control %s, routes %s: the hash tag does not hold", id, in, ctl, routes)
		}
		t.Logf("replica %s: slot %s on %s", id, in, c.NodeFor(t, names.Inbound(id)).Addr())
	}

	rs := []*receiver{newReceiver(), newReceiver()}
	beats := make(chan Heartbeat, 16)
	var bs []*Bus
	for i, id := range ids {
		o := testOptions(t, id, c.Addrs()...)
		rs[i].attach(&o)
		if i == 1 {
			o.OnHeartbeat = func(hb Heartbeat) { beats <- hb }
			// One seed node and Cluster set explicitly work as well as the full list.
			o.Addrs, o.Cluster = c.Addrs()[:1], true
		}
		bs = append(bs, newBus(t, o))
	}
	waitConnected(t, bs...)
	if !bs[0].opts.Cluster {
		t.Fatal("several addresses did not select cluster mode")
	}
	if got := len(bs[0].links); got != 1 {
		t.Fatalf("%d subscription connections for the replica's own channels, want 1", got)
	}
	if got := len(bs[1].links); got != 2 {
		t.Fatalf("%d subscription connections with heartbeats on another slot, want 2", got)
	}

	const n = 2000
	rec := newDoneRecorder()
	for i := uint64(0); i < n; i++ {
		bs[0].Publish(ids[1], seqMessage(ids[0], i), rec.done(i))
		bs[1].Publish(ids[0], seqMessage(ids[1], i), rec.done(n+i))
	}
	rec.wait(t, 10*time.Second)
	if len(rec.ok) != 2*n {
		t.Fatalf("%d ok, errors %v", len(rec.ok), rec.errs)
	}
	for i, r := range rs {
		waitFor(t, ids[i]+" receives all", 5*time.Second, func() bool { return r.count() == n })
		for j, seq := range r.seqs() {
			if seq != uint64(j) {
				t.Fatalf("%s: message %d has sequence %d", ids[i], j, seq)
			}
		}
	}

	if err := bs[0].PublishHeartbeat(context.Background(), Heartbeat{Kind: KindBroker, Version: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case hb := <-beats:
		if hb.ReplicaID != ids[0] || !hb.Redis.Connected {
			t.Fatalf("heartbeat %+v", hb)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no heartbeat in cluster mode")
	}

	publish, spublish := 0, 0
	for _, node := range c.Nodes {
		publish += node.CommandCalls("publish")
		sp := node.CommandCalls("spublish")
		spublish += sp
		t.Logf("node %s: %d SPUBLISH", node.Addr(), sp)
	}
	for i, id := range ids {
		if c.NodeFor(t, names.Inbound(id)).CommandCalls("spublish") == 0 {
			t.Fatalf("no SPUBLISH on the node of %s's channel", ids[i])
		}
	}
	if publish != 0 {
		t.Fatalf("%d plain PUBLISH calls in cluster mode", publish)
	}
	if spublish > 2*n*5/100+1 {
		t.Fatalf("%d SPUBLISH calls for %d messages", spublish, 2*n)
	}
	t.Logf("%d messages, %d SPUBLISH (%.4f per message)", 2*n, spublish, float64(spublish)/(2*n))
}
