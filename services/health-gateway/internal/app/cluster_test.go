package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/monitor"
)

// Short intervals so that a failure and a recovery each take about a second. The brokers keep
// their default BROKER_PEER_TIMEOUT (5 s), longer than any partition below, so neither replica
// forgets the other's routes.
const (
	testHeartbeat = 100 * time.Millisecond
	testFailAfter = time.Second
	testRecover   = time.Second
)

// testCluster is a real redis-server, two real broker processes (broker-b reaches Redis through a
// proxy that can black-hole the link) and the gateway, in-process, on loopback.
type testCluster struct {
	t       *testing.T
	redis   *redistest.Server
	proxyB  *redistest.Proxy
	brokers map[string]*proctest.Proc
	base    string // the gateway's http://host:port
	logs    *syncBuf
	opts    clusterOptions
}

// clusterOptions vary startCluster's set-up.
type clusterOptions struct {
	redis     *redistest.Server    // default: a plain redis-server
	brokerEnv []string             // more environment for every broker
	gateway   func(*config.Config) // adjusts the gateway's configuration
	token     string               // sent as a bearer token with every API request
	more      []string             // more broker replicas, on Redis directly
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startCluster(t *testing.T) *testCluster { return startClusterWith(t, clusterOptions{}) }

func startClusterWith(t *testing.T, o clusterOptions) *testCluster {
	t.Helper()
	if o.redis == nil {
		o.redis = redistest.Start(t)
	}
	c := &testCluster{t: t, redis: o.redis, brokers: map[string]*proctest.Proc{}, logs: &syncBuf{}, opts: o}
	c.proxyB = redistest.StartProxy(t, c.redis.Addr())
	c.startBroker("broker-a", c.redis.Addr())
	c.startBroker("broker-b", c.proxyB.Addr())
	for _, id := range o.more {
		c.startBroker(id, c.redis.Addr())
	}

	cfg := config.Default()
	cfg.ID = "gateway-test"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RedisAddrs = []string{c.redis.Addr()}
	cfg.HeartbeatInterval = testHeartbeat
	cfg.MissedHeartbeats = 3
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.ProbeTimeout = 500 * time.Millisecond
	cfg.FailAfter, cfg.RecoverAfter = testFailAfter, testRecover
	cfg.Env = c.redis.Env()
	if o.gateway != nil {
		o.gateway(&cfg)
	}
	log := zerolog.New(c.logs).With().Timestamp().Logger()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, log, func(a string) { addr <- a }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", c.logs.String())
			for id, p := range c.brokers {
				t.Logf("%s log:\n%s", id, p.Output())
			}
		}
	})
	select {
	case a := <-addr:
		c.base = "http://" + a
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start")
	}
	return c
}

// startBroker starts (or restarts) a broker replica on a free port, on the Redis at redisAddr.
func (c *testCluster) startBroker(id, redisAddr string) {
	c.t.Helper()
	bin := proctest.Build(c.t, "github.com/mcloudtt/mcloudtt/services/broker/cmd/broker")
	env := []string{
		"BROKER_ID=" + id, "BROKER_MQTT_ADDR=127.0.0.1:0", "BROKER_HTTP_ADDR=127.0.0.1:0",
		"BROKER_REDIS_ADDRS=" + redisAddr, "BROKER_HEARTBEAT_INTERVAL=" + testHeartbeat.String(),
		"BROKER_SYS_INTERVAL=0", "BROKER_ALLOW_ANONYMOUS=true", "BROKER_LOG_FORMAT=json",
	}
	env = append(env, c.redis.EnvVars("BROKER")...)
	p := proctest.Start(c.t, bin, append(env, c.opts.brokerEnv...))
	if !p.WaitOutput("broker started", 10*time.Second) {
		c.t.Fatalf("%s did not start:\n%s", id, p.Output())
	}
	c.brokers[id] = p
}

func (c *testCluster) cluster() monitor.Cluster {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.base+"/api/v1/cluster", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.opts.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.opts.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		c.t.Fatalf("GET /api/v1/cluster: %s", resp.Status)
	}
	var cl monitor.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&cl); err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// waitFor polls the API until cond holds, and returns that state and when it was seen.
func (c *testCluster) waitFor(what string, timeout time.Duration, cond func(monitor.Cluster) bool) (monitor.Cluster, time.Time) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last monitor.Cluster
	for time.Now().Before(deadline) {
		last = c.cluster()
		if cond(last) {
			return last, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	js, _ := json.MarshalIndent(last, "", "  ")
	c.t.Fatalf("%s: not within %s; last state:\n%s", what, timeout, js)
	return last, time.Time{}
}

func pair(cl monitor.Cluster, from, to string) (monitor.PairOut, bool) {
	for _, p := range cl.Pairs {
		if p.From == from && p.To == to {
			return p, true
		}
	}
	return monitor.PairOut{}, false
}

// allGreen: both brokers up and green, both ring pairs probed successfully and green.
func allGreen(cl monitor.Cluster) bool {
	if cl.Status != monitor.Green || len(cl.Members) != 2 {
		return false
	}
	for _, m := range cl.Members {
		if !m.Up || m.Status != monitor.Green {
			return false
		}
	}
	ab, ok1 := pair(cl, "broker-a", "broker-b")
	ba, ok2 := pair(cl, "broker-b", "broker-a")
	return ok1 && ok2 && len(cl.Pairs) == 2 && ab.Status == monitor.Green && ab.OK && !ab.Pending &&
		ba.Status == monitor.Green && ba.OK && !ba.Pending
}

func pairRed(from, to string) func(monitor.Cluster) bool {
	return func(cl monitor.Cluster) bool {
		p, ok := pair(cl, from, to)
		return ok && p.Status == monitor.Red && cl.Status == monitor.Red
	}
}

func (c *testCluster) metrics() string {
	c.t.Helper()
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Two real replicas on one real Redis: every probe pair green; broker-b's Redis link black-holed,
// then broker-b killed: the pairs through it turn red, not before the damping time, with a reason
// naming them; healed: green again, not before the recovery time.
func TestClusterProbesTurnRedAndGreen(t *testing.T) {
	t.Parallel()
	c := startCluster(t)

	green, _ := c.waitFor("all green", 20*time.Second, allGreen)
	if len(green.Members) != 2 || green.Members[0].ReplicaID != "broker-a" || green.Members[1].ReplicaID != "broker-b" {
		t.Fatalf("members %+v", green.Members)
	}
	// Collect a few rounds of cross-replica latency.
	time.Sleep(time.Second)
	green = c.cluster()
	var lat []float64
	for _, p := range green.Pairs {
		for _, h := range p.History {
			if h.OK {
				lat = append(lat, h.LatencyMS)
			}
		}
	}
	sort.Float64s(lat)
	if len(lat) == 0 {
		t.Fatal("no successful probe in the history")
	}
	t.Logf("cross-replica probe latency over %d probes: min %.3f ms, median %.3f ms, max %.3f ms",
		len(lat), lat[0], lat[len(lat)/2], lat[len(lat)-1])
	if m := c.metrics(); !strings.Contains(m, `mcloudtt_gateway_members_up{kind="broker"} 2`) ||
		!strings.Contains(m, `mcloudtt_gateway_probe_latency_seconds_count{from="broker-a",to="broker-b"}`) ||
		!strings.Contains(m, `mcloudtt_gateway_cluster_green 1`) {
		t.Fatalf("metrics while green:\n%s", m)
	}
	if resp, err := http.Get(c.base + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz: %v %v", resp, err)
	}

	// broker-b's Redis link goes silent (a partition: nothing forwarded, nothing closed).
	cut := time.Now()
	c.proxyB.Blackhole()
	red, redAt := c.waitFor("broker-a -> broker-b red", 15*time.Second, pairRed("broker-a", "broker-b"))
	if d := redAt.Sub(cut); d < testFailAfter {
		t.Fatalf("red after %s, before the damping time %s", d, testFailAfter)
	}
	if !strings.Contains(red.Reason, "probe broker-a -> broker-b") || !strings.Contains(red.Reason, "broker-b") {
		t.Fatalf("reason does not name the pair: %q", red.Reason)
	}
	t.Logf("black-holed: red after %s: %s", redAt.Sub(cut).Round(time.Millisecond), red.Reason)
	c.waitFor("broker-b -> broker-a red", 15*time.Second, pairRed("broker-b", "broker-a"))
	if m := c.metrics(); !strings.Contains(m, `mcloudtt_gateway_pair_green{from="broker-a",to="broker-b"} 0`) ||
		!strings.Contains(m, `mcloudtt_gateway_cluster_green 0`) ||
		!strings.Contains(m, `mcloudtt_gateway_probe_failures_total{from="broker-a",to="broker-b"}`) {
		t.Fatalf("metrics while red:\n%s", m)
	}

	healed := time.Now()
	c.proxyB.Restore()
	_, greenAt := c.waitFor("green after the link is restored", 30*time.Second, allGreen)
	if d := greenAt.Sub(healed); d < testRecover {
		t.Fatalf("green after %s, before the recovery time %s", d, testRecover)
	}
	t.Logf("restored: green after %s", greenAt.Sub(healed).Round(time.Millisecond))

	// broker-b crashes.
	killed := time.Now()
	if err := c.brokers["broker-b"].Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	red, redAt = c.waitFor("pairs through the killed broker-b red", 15*time.Second, func(cl monitor.Cluster) bool {
		return pairRed("broker-a", "broker-b")(cl) && pairRed("broker-b", "broker-a")(cl)
	})
	if d := redAt.Sub(killed); d < testFailAfter {
		t.Fatalf("red after %s, before the damping time %s", d, testFailAfter)
	}
	if !strings.Contains(red.Reason, "broker-b") || strings.Contains(red.Reason, "broker broker-a") {
		t.Fatalf("reason should name broker-b only: %q", red.Reason)
	}
	t.Logf("killed: red after %s: %s", redAt.Sub(killed).Round(time.Millisecond), red.Reason)
	// The live replica keeps a ring of its own: broker-a -> broker-a works and stays green.
	c.waitFor("broker-a -> broker-a probed", 15*time.Second, func(cl monitor.Cluster) bool {
		p, ok := pair(cl, "broker-a", "broker-a")
		return ok && p.Probed && p.OK && p.Status == monitor.Green
	})
	// It comes back on another port; the gateway follows the address in its heartbeat.
	c.startBroker("broker-b", c.proxyB.Addr())
	c.waitFor("green after broker-b restarts", 30*time.Second, allGreen)

	// A scale-down: broker-b drains on SIGTERM and says it is leaving. The gateway forgets it
	// and stays green instead of reporting a failure.
	if err := c.brokers["broker-b"].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.waitFor("broker-b forgotten after it left", 10*time.Second, func(cl monitor.Cluster) bool {
		for _, m := range cl.Members {
			if m.ReplicaID == "broker-b" {
				return false
			}
		}
		return true
	})
	deadline := time.Now().Add(testFailAfter + testRecover)
	for time.Now().Before(deadline) {
		if cl := c.cluster(); cl.Status != monitor.Green {
			t.Fatalf("a replica that left on purpose turned the cluster %s: %s", cl.Status, cl.Reason)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
