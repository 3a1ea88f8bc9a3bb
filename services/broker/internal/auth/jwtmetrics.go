package auth

import "github.com/prometheus/client_golang/prometheus"

var (
	descJWTFailures = prometheus.NewDesc("mcloudtt_broker_jwt_auth_failures_total",
		"CONNECTs whose JWT password was refused, by cause.", []string{"cause"}, nil)
	descJWTAccepted = prometheus.NewDesc("mcloudtt_broker_jwt_auth_accepted_total",
		"CONNECTs authenticated by a JWT, by key source (registry or jwks).", []string{"source"}, nil)
)

// Describe implements prometheus.Collector.
func (j *JWT) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJWTFailures
	ch <- descJWTAccepted
}

// Collect implements prometheus.Collector: every cause appears, zero or not, so a dashboard can
// rate them from the start.
func (j *JWT) Collect(ch chan<- prometheus.Metric) {
	for i := range j.counts {
		ch <- prometheus.MustNewConstMetric(descJWTFailures, prometheus.CounterValue,
			float64(j.counts[i].Load()), JWTCause(i).String())
	}
	for i, src := range []string{"registry", "jwks"} {
		ch <- prometheus.MustNewConstMetric(descJWTAccepted, prometheus.CounterValue, float64(j.ok[i].Load()), src)
	}
}

// Failures returns how many tokens were refused for cause.
func (j *JWT) Failures(cause JWTCause) int64 { return j.counts[cause].Load() }

var _ prometheus.Collector = (*JWT)(nil)
