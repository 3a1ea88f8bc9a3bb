package monitoring

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// synthetic are the series Prometheus makes itself for every target, not the services.
var synthetic = map[string]bool{"up": true}

// Every metric the alert rules and the dashboards name is exposed by a real process: two brokers
// in a cluster on a real redis-server, an adapter writing into the BigQuery emulator and a health
// gateway probing the brokers, scraped once the gateway has probed every pair and heard the
// adapter (the series that appear only after those first events). Then Redis stops, and every
// service's mcloudtt_redis_connected turns 0.
func TestEveryMetricNamedIsExposed(t *testing.T) {
	root := repoRoot(t)
	wanted := namedMetrics(t, root)
	rs := redistest.New(t)
	rs.Start()
	addrs := startServices(t, root, rs)
	exposed := map[string]bool{}
	for _, addr := range addrs {
		if !strings.Contains(scrape(t, addr), "\nmcloudtt_redis_connected 1\n") {
			t.Errorf("%s: mcloudtt_redis_connected is not 1 while Redis runs", addr)
		}
		for n := range ExposedNames(scrape(t, addr)) {
			exposed[n] = true
		}
	}
	for _, name := range Sorted(wantedNames(wanted)) {
		if !exposed[name] && !synthetic[name] {
			t.Errorf("%s is named by %s but no service exposes it", name, strings.Join(wanted[name], "; "))
		}
	}
	t.Logf("%d metric names in the rules and dashboards, %d exposed by the services", len(wanted), len(exposed))

	// The gauge RedisLinkDown fires on follows the real link: with Redis gone, every service says 0.
	rs.Stop()
	for _, addr := range addrs {
		waitMetrics(t, addr, 30*time.Second, "mcloudtt_redis_connected 0")
	}
}

// waitMetrics waits until the /metrics at addr contains every one of want.
func waitMetrics(t *testing.T, addr string, within time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		body := scrape(t, addr)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the /metrics of %s still lacks %s after %s:\n%s", addr, missing, within, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func wantedNames(w map[string][]string) map[string]bool {
	s := map[string]bool{}
	for k := range w {
		s[k] = true
	}
	return s
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// namedMetrics maps each metric name the rules and dashboards select to where.
func namedMetrics(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	exprs, err := RuleExprs(filepath.Join(root, RulesFile))
	if err != nil {
		t.Fatal(err)
	}
	queries, err := DashboardQueries(filepath.Join(root, DashboardsDir))
	if err != nil {
		t.Fatal(err)
	}
	for alert, e := range exprs {
		queries["alert "+alert] = []string{e}
	}
	for where, qs := range queries {
		for _, q := range qs {
			names, err := MetricNames(q)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			for _, n := range names {
				out[n] = append(out[n], where)
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no metric names found")
	}
	return out
}

// startServices builds and starts two brokers, an adapter (on the BigQuery emulator) and a
// gateway on rs, waits until the gateway has probed both pairs and heard the adapter (the series
// that appear only after those first events), and returns their HTTP addresses.
func startServices(t *testing.T, root string, rs *redistest.Server) []string {
	t.Helper()
	bin := buildServices(t, root)
	bq := startEmulator(t)
	var addrs []string
	for _, id := range []string{"broker-a", "broker-b"} {
		http := proctest.FreeAddr(t)
		start(t, filepath.Join(bin, "broker"), nil, append(rs.EnvVars("BROKER"), "BROKER_REDIS_ADDRS="+rs.Addr(), "BROKER_ID="+id,
			"BROKER_MQTT_ADDR="+proctest.FreeAddr(t), "BROKER_HTTP_ADDR="+http)...)
		addrs = append(addrs, http)
	}
	adapter := proctest.FreeAddr(t)
	start(t, filepath.Join(bin, "bigquery-adapter"), nil, append(rs.EnvVars("ADAPTER"), "ADAPTER_REDIS_ADDRS="+rs.Addr(), "ADAPTER_ID=adapter-a",
		"ADAPTER_HTTP_ADDR="+adapter, "ADAPTER_BIGQUERY_PROJECT=mcloudtt-test", "ADAPTER_BIGQUERY_API=insertall",
		"ADAPTER_BIGQUERY_ENDPOINT=http://"+bq)...)
	gateway := proctest.FreeAddr(t)
	start(t, filepath.Join(bin, "health-gateway"), nil, append(rs.EnvVars("GATEWAY"), "GATEWAY_REDIS_ADDRS="+rs.Addr(), "GATEWAY_ID=gateway-a",
		"GATEWAY_HTTP_ADDR="+gateway, "GATEWAY_PROBE_INTERVAL=200ms")...)
	waitMetrics(t, gateway, 90*time.Second,
		`mcloudtt_gateway_probe_latency_seconds_bucket{from="broker-a",to="broker-b"`,
		`mcloudtt_gateway_probe_latency_seconds_bucket{from="broker-b",to="broker-a"`,
		`mcloudtt_gateway_adapter_export_lag_seconds{replica="adapter-a"}`, "mcloudtt_gateway_cluster_green 1")
	return append(addrs, adapter, gateway)
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %v", addr, resp.StatusCode, err)
	}
	return string(body)
}

// buildServices builds the three services with the repository's workspace into a temporary
// directory.
func buildServices(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./services/broker/cmd/broker",
		"./services/bigquery-adapter/cmd/bigquery-adapter", "./services/health-gateway/cmd/health-gateway")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build the services: %v\n%s", err, out)
	}
	return dir
}

// start runs a binary with args and env (and nothing else from this process's environment) and
// stops it when the test ends; its output is logged if the test fails.
func start(t *testing.T, bin string, args []string, env ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(bin), out.String())
		}
	})
}

// startEmulator runs the BigQuery emulator scripts/deps.sh bq builds, on free loopback ports, and
// returns its REST address once it answers.
func startEmulator(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("MCLOUDTT_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "mcloudtt")
	}
	bin := filepath.Join(cache, "bin", "bigquery-emulator")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run scripts/deps.sh bq", bin)
	}
	addr, grpc := proctest.FreeAddr(t), proctest.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	_, gport, _ := net.SplitHostPort(grpc)
	// TMPDIR: the emulator keeps its database in a temporary file it never removes.
	start(t, bin, []string{"--project=mcloudtt-test", "--host=127.0.0.1", "--port=" + port, "--grpc-port=" + gport, "--log-level=warn"},
		"TMPDIR="+t.TempDir())
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
	}
	t.Fatalf("the BigQuery emulator did not listen on %s within 60 s", addr)
	return ""
}
