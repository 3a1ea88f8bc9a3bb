// Package metricstest reads a running broker's Prometheus /metrics for tests: one sample, or
// whether a cluster's route caches have settled. The in-process app tests and the process-level
// tests of cmd/broker share it.
package metricstest

import (
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape fetches and parses http://httpAddr/metrics.
func Scrape(t testing.TB, httpAddr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("%s/metrics: %v", httpAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s/metrics: %d %s", httpAddr, resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s/metrics: parse: %v", httpAddr, err)
	}
	return fams
}

// Value returns the value of the first sample of family name whose labels include the given
// name/value pairs; it fails the test when there is none.
func Value(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("no sample of %s with %v", name, labels)
	return 0
}

// Settled waits (10 s at most) until the route cache of every replica, given by its HTTP address,
// holds exactly the other replicas' filters. Route notices travel asynchronously: a SUBACK only
// says that the subscriber's own replica saw its route in Redis.
func Settled(t testing.TB, httpAddrs ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		locals := make([]float64, len(httpAddrs))
		remotes := make([]float64, len(httpAddrs))
		total := 0.0
		for i, a := range httpAddrs {
			fams := Scrape(t, a)
			locals[i] = Value(t, fams, "mcloudtt_broker_cluster_local_filters")
			remotes[i] = Value(t, fams, "mcloudtt_broker_cluster_remote_filters")
			total += locals[i]
		}
		ok := true
		for i := range httpAddrs {
			ok = ok && remotes[i] == total-locals[i]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("route caches never settled: local %v, remote %v", locals, remotes)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
