package redistest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Cluster is a Redis Cluster of masters without replicas, all on loopback ports.
type Cluster struct {
	Nodes []*Server
}

// Addrs returns the nodes' addresses, in slot order (node 0 serves the lowest slots).
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// StartCluster starts masters redis-servers in cluster mode, splits the 16384 slots evenly
// between them (CLUSTER ADDSLOTSRANGE), introduces them to each other (CLUSTER MEET) and waits
// until every node reports cluster_state:ok and knows every other node.
func StartCluster(t testing.TB, masters int, opts ...Option) *Cluster {
	t.Helper()
	if masters < 1 {
		t.Fatalf("redistest: StartCluster needs at least one master, got %d", masters)
	}
	c := &Cluster{}
	opts = append(opts, func(c *config) { c.cluster = true })
	for i := 0; i < masters; i++ {
		s := New(t, opts...)
		s.Start()
		c.Nodes = append(c.Nodes, s)
	}
	do := func(s *Server, args ...string) string {
		t.Helper()
		r, err := s.Do(args...)
		if err != nil {
			t.Fatalf("redistest: %s on %s: %v", strings.Join(args, " "), s.Addr(), err)
		}
		return r
	}
	const slots = 16384
	for i, s := range c.Nodes {
		lo, hi := i*slots/masters, (i+1)*slots/masters-1
		do(s, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi))
		// Distinct epochs, as redis-cli --cluster create sets them, so no node has to win a
		// collision before the cluster settles.
		do(s, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
	}
	for _, s := range c.Nodes[1:] {
		do(c.Nodes[0], "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(s.Port()))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad := ""
		for _, s := range c.Nodes {
			info, err := s.Do("CLUSTER", "INFO")
			if err != nil {
				bad = fmt.Sprintf("%s: %v", s.Addr(), err)
				break
			}
			if InfoField(info, "cluster_state", "") != "ok" ||
				InfoField(info, "cluster_known_nodes", "") != strconv.Itoa(masters) ||
				InfoField(info, "cluster_slots_ok", "") != strconv.Itoa(slots) {
				bad = s.Addr() + ":\n" + info
				break
			}
		}
		if bad == "" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: cluster not ready after 30s: %s", bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NodeFor returns the node serving key's slot, by asking CLUSTER KEYSLOT and matching the ranges
// StartCluster assigned.
func (c *Cluster) NodeFor(t testing.TB, key string) *Server {
	t.Helper()
	r, err := c.Nodes[0].Do("CLUSTER", "KEYSLOT", key)
	if err != nil {
		t.Fatalf("redistest: CLUSTER KEYSLOT: %v", err)
	}
	slot, _ := strconv.Atoi(r)
	n := len(c.Nodes)
	for i := range c.Nodes {
		if slot <= (i+1)*16384/n-1 {
			return c.Nodes[i]
		}
	}
	return c.Nodes[n-1]
}
