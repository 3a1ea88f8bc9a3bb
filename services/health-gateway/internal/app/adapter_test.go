package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/monitor"
)

// An adapter's heartbeats on a real Redis: its export lag shows in the API and the metrics, a lag
// beyond GATEWAY_ADAPTER_MAX_LAG turns it red after the damping time, and with no broker at all the
// cluster is red for that reason.
func TestAdapterLagAndNoBrokers(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RedisAddrs = []string{rs.Addr()}
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.ProbeInterval = 200 * time.Millisecond
	cfg.FailAfter, cfg.RecoverAfter = 500*time.Millisecond, 500*time.Millisecond
	cfg.AdapterMaxLag = 30 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, zerolog.Nop(), func(a string) { addr <- a }) }()
	defer func() { cancel(); <-done }()
	base := "http://" + <-addr

	adapter, err := bus.New(context.Background(), bus.Options{Addrs: []string{rs.Addr()}, ReplicaID: "adapter-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer adapter.Close()
	lag := make(chan float64, 1)
	lag <- 4.5
	beats, stopBeats := context.WithCancel(context.Background())
	defer stopBeats()
	go func() {
		cur := 0.0
		for beats.Err() == nil {
			select {
			case cur = <-lag:
			default:
			}
			_ = adapter.PublishHeartbeat(beats, bus.Heartbeat{Kind: bus.KindAdapter, Version: "test",
				Started: time.Now(), ExportLag: int64(cur * 100), ExportLagSeconds: cur})
			time.Sleep(cfg.HeartbeatInterval)
		}
	}()

	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	wait := func(what string, cond func(monitor.Cluster) bool) (monitor.Cluster, time.Time) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		var c monitor.Cluster
		for time.Now().Before(deadline) {
			c = monitor.Cluster{}
			if err := json.Unmarshal(get("/api/v1/cluster"), &c); err != nil {
				t.Fatal(err)
			}
			if cond(c) {
				return c, time.Now()
			}
			time.Sleep(30 * time.Millisecond)
		}
		t.Fatalf("%s: not within 15s: %+v", what, c)
		return c, time.Time{}
	}

	c, _ := wait("adapter listed with its lag", func(c monitor.Cluster) bool {
		return len(c.Adapters) == 1 && c.Adapters[0].ExportLagSecs == 4.5
	})
	if a := c.Adapters[0]; a.ReplicaID != "adapter-1" || !a.Up || a.Status != monitor.Green || a.ExportLag != 450 {
		t.Fatalf("adapter %+v", a)
	}
	m := string(get("/metrics"))
	if !strings.Contains(m, `mcloudtt_gateway_adapter_export_lag_seconds{replica="adapter-1"} 4.5`) ||
		!strings.Contains(m, `mcloudtt_gateway_adapter_export_lag_entries{replica="adapter-1"} 450`) ||
		!strings.Contains(m, `mcloudtt_gateway_members_up{kind="adapter"} 1`) {
		t.Fatalf("metrics:\n%s", m)
	}
	c, _ = wait("red without brokers", func(c monitor.Cluster) bool { return c.Status == monitor.Red })
	if !strings.Contains(c.Reason, "no broker sends heartbeats") {
		t.Fatalf("reason %q", c.Reason)
	}

	from := time.Now()
	lag <- 75
	c, redAt := wait("adapter red", func(c monitor.Cluster) bool {
		return len(c.Adapters) == 1 && c.Adapters[0].Status == monitor.Red
	})
	if d := redAt.Sub(from); d < cfg.FailAfter {
		t.Fatalf("adapter red after %s, before the damping time", d)
	}
	if !strings.Contains(c.Reason, "adapter adapter-1") || !strings.Contains(c.Reason, "export lag 1m15s exceeds 30s") {
		t.Fatalf("reason %q", c.Reason)
	}
	lag <- 0
	wait("adapter green again", func(c monitor.Cluster) bool {
		return len(c.Adapters) == 1 && c.Adapters[0].Status == monitor.Green && !c.Members[0].Pending
	})
}
