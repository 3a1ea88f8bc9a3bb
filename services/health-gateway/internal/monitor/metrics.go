package monitor

import "github.com/prometheus/client_golang/prometheus"

// metrics are the gateway's Prometheus series. Series of a forgotten member or a pair no longer
// probed are deleted, so the label sets stay as small as the cluster.
type metrics struct {
	membersUp    *prometheus.GaugeVec     // kind
	memberUp     *prometheus.GaugeVec     // replica, kind
	memberGreen  *prometheus.GaugeVec     // replica, kind
	pairGreen    *prometheus.GaugeVec     // from, to
	clusterGreen prometheus.Gauge         //
	latency      *prometheus.HistogramVec // from, to
	probes       *prometheus.CounterVec   // from, to
	failures     *prometheus.CounterVec   // from, to
	lagSeconds   *prometheus.GaugeVec     // replica
	lagEntries   *prometheus.GaugeVec     // replica
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns = "mcloudtt_gateway_"
	m := &metrics{
		membersUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "members_up",
			Help: "Members whose heartbeats arrive, by kind (broker, adapter, gateway)."}, []string{"kind"}),
		memberUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "member_up",
			Help: "1 while the member's heartbeats arrive, 0 after the configured number of missed ones."},
			[]string{"replica", "kind"}),
		memberGreen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "member_green",
			Help: "Damped member status: 1 green, 0 red."}, []string{"replica", "kind"}),
		pairGreen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "pair_green",
			Help: "Damped status of the probe pair from -> to: 1 green, 0 red."}, []string{"from", "to"}),
		clusterGreen: prometheus.NewGauge(prometheus.GaugeOpts{Name: ns + "cluster_green",
			Help: "Overall cluster status: 1 green, 0 red (see /api/v1/cluster for the reason)."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: ns + "probe_latency_seconds",
			Help:    "End-to-end latency of successful probes, publish on replica from to arrival on replica to.",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15)}, []string{"from", "to"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "probes_total",
			Help: "Probes sent, by pair."}, []string{"from", "to"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "probe_failures_total",
			Help: "Probes that did not arrive in time (or could not be sent), by pair."}, []string{"from", "to"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "adapter_export_lag_seconds",
			Help: "Age of the oldest export entry the adapter has not yet written to BigQuery."}, []string{"replica"}),
		lagEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ns + "adapter_export_lag_entries",
			Help: "Export entries waiting for the adapter (undelivered plus unacknowledged)."}, []string{"replica"}),
	}
	reg.MustRegister(m.membersUp, m.memberUp, m.memberGreen, m.pairGreen, m.clusterGreen, m.latency,
		m.probes, m.failures, m.lagSeconds, m.lagEntries)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) forgetMember(id string, kind string) {
	m.memberUp.DeleteLabelValues(id, kind)
	m.memberGreen.DeleteLabelValues(id, kind)
	m.lagSeconds.DeleteLabelValues(id)
	m.lagEntries.DeleteLabelValues(id)
}

// probed counts one probe of the pair. The pair's failure counter is exported from its first
// probe on, at 0 until a probe fails, so a rate of failures has a series to work on from the start.
func (m *metrics) probed(p Pair) {
	m.probes.WithLabelValues(p.From, p.To).Inc()
	m.failures.WithLabelValues(p.From, p.To)
}

func (m *metrics) forgetPair(p Pair) {
	m.pairGreen.DeleteLabelValues(p.From, p.To)
	m.latency.DeleteLabelValues(p.From, p.To)
	m.probes.DeleteLabelValues(p.From, p.To)
	m.failures.DeleteLabelValues(p.From, p.To)
}
