package adapter

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the adapter's Prometheus metrics (mcloudtt_adapter_*).
type Metrics struct {
	Rows        prometheus.Counter
	Batches     prometheus.Counter
	BatchTime   prometheus.Histogram
	BatchRows   prometheus.Histogram
	Retries     *prometheus.CounterVec // by class: retry, uncertain, invalid, redis
	DeadLetters *prometheus.CounterVec // by reason: malformed, invalid_row, refused
	Duplicates  *prometheus.CounterVec // by where: batch, cache, table, offset
	Claimed     prometheus.Counter
	Recovered   *prometheus.CounterVec // plans completed by a replica other than their planner's slot, by how
	Streams     prometheus.Counter
	Trimmed     prometheus.Counter
	Released    prometheus.Counter
	Lag         prometheus.Gauge
	LagSeconds  prometheus.Gauge
}

// NewMetrics makes the metrics and registers them with reg (when not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "mcloudtt", "adapter"
	m := &Metrics{
		Rows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rows_written_total",
			Help: "Rows BigQuery confirmed."}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "batches_total",
			Help: "Appends (Storage Write API) or insertAll requests BigQuery confirmed."}),
		BatchTime: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_seconds",
			Help: "Duration of one append or insertAll request that succeeded.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		BatchRows: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_rows",
			Help: "Rows in one confirmed append or insertAll request.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "retries_total",
			Help: "Failed attempts that were retried, by class (retry: refused, uncertain: may have been applied, invalid: split, redis)."}, []string{"class"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Entries moved to the dead-letter stream, by reason."}, []string{"reason"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "duplicates_skipped_total",
			Help: "Rows not written because their id was already written: in the same batch, recently by this replica, found in the table (insertAll), or at the plan's stream offset (Storage Write API: ALREADY_EXISTS)."}, []string{"where"}),
		Recovered: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "plans_recovered_total",
			Help: "Parts of write plans completed after a restart or a claim, by how: append (at the plan's offset; written or already there), finalized (decided by the stream's final row count), query (the stream was gone: the table was asked)."}, []string{"how"}),
		Streams: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "write_streams_created_total",
			Help: "Committed write streams created (Storage Write API)."}),
		Claimed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "claimed_total",
			Help: "Entries taken over from a replica that left them pending (XAUTOCLAIM)."}),
		Trimmed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "trimmed_total",
			Help: "Pending entries the stream had trimmed (MAXLEN) before they were written: lost."}),
		Released: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "released_total",
			Help: "Export stream entries every consumer group had acknowledged, removed from the stream (XTRIM MINID)."}),
		Lag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "export_lag",
			Help: "Export entries waiting for the group: not yet delivered plus not yet acknowledged."}),
		LagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "export_lag_seconds",
			Help: "Age of the oldest export entry not yet written (0 when caught up)."}),
	}
	// Every label value the adapter uses is exported from the start, at 0, so a rule on a rate or
	// an increase has a series to compare with before the first event.
	for vec, values := range map[*prometheus.CounterVec][]string{
		m.Retries:     {"retry", "uncertain", "invalid", "redis"},
		m.DeadLetters: {"malformed", "invalid_row", "refused"},
		m.Duplicates:  {"batch", "cache", "table", "offset"},
		m.Recovered:   {"append", "finalized", "query"},
	} {
		for _, v := range values {
			vec.WithLabelValues(v)
		}
	}
	if reg != nil {
		reg.MustRegister(m.Rows, m.Batches, m.BatchTime, m.BatchRows, m.Retries, m.DeadLetters, m.Duplicates,
			m.Claimed, m.Trimmed, m.Released, m.Lag, m.LagSeconds, m.Recovered, m.Streams)
	}
	return m
}
