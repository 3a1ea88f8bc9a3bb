package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/bigquery-adapter/internal/bqtest"
)

// stack is a real redis-server, a real BigQuery emulator and the adapter binary.
type stack struct {
	t     testing.TB
	redis *redistest.Server
	emu   *bqtest.Emulator
	bin   string
	rc    *redis.Client
	names bus.Names
}

const (
	table  = "`test.mqtt.messages`"
	events = "`test.mqtt.events`"
)

func newStack(t testing.TB) *stack { return newStackOn(t, redistest.Start(t)) }

// newStackOn is newStack on rs, which may require AUTH and TLS (its Conn is used everywhere).
func newStackOn(t testing.TB, rs *redistest.Server) *stack {
	t.Helper()
	emu := bqtest.Start(t, "test") // skips when the emulator is not built
	s := &stack{t: t, redis: rs, emu: emu, bin: proctest.Build(t, "."), names: bus.NewNames("")}
	conn, err := redisconn.New(rs.Conn())
	if err != nil {
		t.Fatal(err)
	}
	o := &redis.Options{Addr: s.redis.Addr()}
	conn.Client(o)
	s.rc = redis.NewClient(o)
	t.Cleanup(func() { _ = s.rc.Close() })
	return s
}

// adapter starts the adapter binary as replica id against endpoint (the emulator's REST API or a
// proxy in front of it; the Storage Write API goes to the emulator's gRPC port unless env sets
// ADAPTER_BIGQUERY_GRPC_ENDPOINT) and waits until it reports ready. It returns the process and
// its HTTP address.
func (s *stack) adapter(id, endpoint string, env ...string) (*proctest.Proc, string) {
	s.t.Helper()
	httpAddr := proctest.FreeAddr(s.t)
	base := []string{"ADAPTER_ID=" + id, "ADAPTER_HTTP_ADDR=" + httpAddr, "ADAPTER_LOG_FORMAT=json",
		"ADAPTER_REDIS_ADDRS=" + s.redis.Addr(), "ADAPTER_BIGQUERY_PROJECT=" + s.emu.Project,
		"ADAPTER_BIGQUERY_ENDPOINT=" + endpoint, "ADAPTER_BIGQUERY_GRPC_ENDPOINT=" + s.emu.GRPCAddr, "ADAPTER_BATCH_DELAY=50ms",
		"ADAPTER_RETRY_MIN=20ms", "ADAPTER_RETRY_MAX=300ms", "ADAPTER_HEARTBEAT_INTERVAL=200ms"}
	base = append(base, s.redis.EnvVars("ADAPTER")...)
	p := proctest.Start(s.t, s.bin, append(base, env...))
	// Generous: behind the fault proxy the client library's own retries of set-up calls back off.
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p, httpAddr
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("adapter %s not ready after 60s (%v):\n%s", id, err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// count runs a query returning one integer.
func (s *stack) count(sql string) int64 {
	s.t.Helper()
	rows := s.emu.Query(s.t, sql)
	if len(rows) != 1 || len(rows[0]) != 1 {
		s.t.Fatalf("%s: %v", sql, rows)
	}
	n, ok := rows[0][0].(int64)
	if !ok {
		s.t.Fatalf("%s: %T %v", sql, rows[0][0], rows[0][0])
	}
	return n
}

// waitRows waits until the table holds n rows, failing when the count stops moving for stall.
func (s *stack) waitRows(n int64, stall time.Duration, logs func() string) {
	s.t.Helper()
	last, lastChange := int64(-1), time.Now()
	for {
		got := s.count("SELECT COUNT(*) FROM " + table)
		if got >= n {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > stall {
			s.t.Fatalf("table stuck at %d rows of %d for %v\n%s", got, n, stall, tail(logs(), 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pending returns the entries delivered to the group and not acknowledged.
func (s *stack) pending() int64 {
	s.t.Helper()
	p, err := s.rc.XPending(context.Background(), s.names.Export(), "bigquery-adapter").Result()
	if err != nil {
		s.t.Fatal(err)
	}
	return p.Count
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// metric reads one sample from the adapter's /metrics ("name" or `name{label="v"}`).
func metric(t testing.TB, httpAddr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := res.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(line, name+" ") {
			var v float64
			_, _ = fmt.Sscan(strings.TrimPrefix(line, name+" "), &v)
			return v
		}
	}
	return 0
}

// values converts a row of bigquery.Value into a map by column name.
func values(cols []string, row []bigquery.Value) map[string]bigquery.Value {
	m := make(map[string]bigquery.Value, len(cols))
	for i, c := range cols {
		m[c] = row[i]
	}
	return m
}
