package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// netns is a network namespace joined to the root one by two veth pairs: "data" (to Redis), which
// the test cuts, and "mgmt" (MQTT and HTTP from the test), which stays up.
type netns struct {
	name               string
	dataRoot, dataIP   string // root side of the data link, and the namespace's address on it
	dataRootIP         string
	mgmtIP             string
	dataLink, mgmtLink string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// newNetns makes the namespace, or returns an error saying why namespaces are unavailable.
func newNetns(t *testing.T) (*netns, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("not root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("no ip command (iproute2)")
	}
	id := os.Getpid() % 200
	n := &netns{name: fmt.Sprintf("mcloudtt-test-%d", id),
		dataLink: fmt.Sprintf("mcd%d", id), mgmtLink: fmt.Sprintf("mcm%d", id),
		dataRootIP: fmt.Sprintf("10.250.%d.1", id), dataIP: fmt.Sprintf("10.250.%d.2", id),
		mgmtIP: fmt.Sprintf("10.251.%d.2", id)}
	n.dataRoot = n.dataLink + "r"
	_ = ipCmd("netns", "del", n.name) // a leftover of an interrupted run
	_ = ipCmd("link", "del", n.dataRoot)
	_ = ipCmd("link", "del", n.mgmtLink+"r")
	if err := ipCmd("netns", "add", n.name); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		_ = ipCmd("link", "del", n.dataRoot)
		_ = ipCmd("link", "del", n.mgmtLink+"r")
		_ = ipCmd("netns", "del", n.name)
	})
	steps := [][]string{
		{"link", "add", n.dataRoot, "type", "veth", "peer", "name", n.dataLink},
		{"link", "add", n.mgmtLink + "r", "type", "veth", "peer", "name", n.mgmtLink},
		{"link", "set", n.dataLink, "netns", n.name},
		{"link", "set", n.mgmtLink, "netns", n.name},
		{"addr", "add", n.dataRootIP + "/30", "dev", n.dataRoot},
		{"addr", "add", fmt.Sprintf("10.251.%d.1/30", id), "dev", n.mgmtLink + "r"},
		{"link", "set", n.dataRoot, "up"},
		{"link", "set", n.mgmtLink + "r", "up"},
		{"-n", n.name, "addr", "add", n.dataIP + "/30", "dev", n.dataLink},
		{"-n", n.name, "addr", "add", n.mgmtIP + "/30", "dev", n.mgmtLink},
		{"-n", n.name, "link", "set", n.dataLink, "up"},
		{"-n", n.name, "link", "set", n.mgmtLink, "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// A real partition: the link between a replica (in its own network namespace) and Redis is cut
// without closing TCP. The replica notices the half-open connection through the health checks on
// its subscription connection, turns not ready, and recovers when the link returns; messages
// from the other replica reach its subscribers again.
func TestPartitionedReplicaNoticesAndRecovers(t *testing.T) {
	ns, err := newNetns(t)
	if err != nil {
		t.Skipf("SKIPPED: network namespaces unavailable here (%v); the partition test needs root and iproute2", err)
	}
	rs := redistest.Start(t, redistest.WithArgs("--bind", "127.0.0.1 "+ns.dataRootIP, "--protected-mode", "no"))
	port := strings.TrimPrefix(rs.Addr(), "127.0.0.1:")
	a := startReplica(t, "replica-a", []string{rs.Addr()})

	b := &replica{id: "replica-b", mqtt: ns.mgmtIP + ":1883", http: ns.mgmtIP + ":8080"}
	b.Proc = proctest.Start(t, "ip", []string{"BROKER_ID=replica-b", "BROKER_MQTT_ADDR=" + b.mqtt,
		"BROKER_HTTP_ADDR=" + b.http, "BROKER_LOG_FORMAT=json", "BROKER_REDIS_ADDRS=" + ns.dataRootIP + ":" + port,
		"BROKER_HEARTBEAT_INTERVAL=200ms", "BROKER_PEER_TIMEOUT=1500ms"},
		"netns", "exec", ns.name, proctest.Build(t, "."))
	b.waitReady(t, true, 15*time.Second)

	ch, h := collect()
	sub := connectV3(t, b.mqtt, "sub", false, h)
	mustOK(t, sub.Subscribe("p/#", 1, nil))
	settled(t, a, b)
	pub := connectV3(t, a.mqtt, "pub", true, nil)
	mustOK(t, pub.Publish("p/1", 1, false, "before"))
	expect(t, ch, "p/1=before")

	// Cut: the root side of the data link goes down; nothing is closed, packets just vanish.
	if err := ipCmd("link", "set", ns.dataRoot, "down"); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	b.waitReady(t, false, 10*time.Second)
	noticed := time.Since(cut)
	t.Logf("partitioned replica not ready after %v", noticed.Round(time.Millisecond))
	// Bound: health interval (1s) + health timeout (3s), the bus defaults, plus slack.
	if noticed > 6*time.Second {
		t.Fatalf("took %v to notice the half-open link", noticed)
	}
	if !b.WaitOutput("redis not connected", time.Second) {
		t.Fatalf("no log line about the lost link:\n%s", b.Output())
	}

	if err := ipCmd("link", "set", ns.dataRoot, "up"); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	b.waitReady(t, true, 20*time.Second)
	t.Logf("ready again %v after the link returned", time.Since(restored).Round(time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		mustOK(t, pub.Publish("p/2", 1, false, fmt.Sprint("after-", i)))
		select {
		case got := <-ch:
			if strings.HasPrefix(got, "p/2=after-") {
				return
			}
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery from replica-a to the recovered replica")
		}
	}
}
