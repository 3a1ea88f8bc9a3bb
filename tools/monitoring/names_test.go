package monitoring

import (
	"reflect"
	"testing"
)

func TestMetricNames(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{pod="x"}[5m])))`, []string{"a_seconds_bucket"}},
		{`rate(a_sum[5m]) / rate(a_count[5m])`, []string{"a_sum", "a_count"}},
		{`{__name__="b_total", job="broker"} > 0.5 * c * (d > 0)`, []string{"b_total", "c", "d"}},
		{`absent(up{job="broker"} == 1)`, []string{"up"}},
	} {
		got, err := MetricNames(c.expr)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("MetricNames(%s) = %v, %v; want %v", c.expr, got, err, c.want)
		}
	}
	for _, bad := range []string{`sum(`, `{job="broker"}`} {
		if _, err := MetricNames(bad); err == nil {
			t.Errorf("MetricNames(%s): no error", bad)
		}
	}
}

func TestSubstitute(t *testing.T) {
	got := Substitute(`rate(m{namespace="$namespace", pod="${pod}"}[$__rate_interval]) offset $__interval`)
	want := `rate(m{namespace="x", pod="x"}[5m]) offset 5m`
	if got != want {
		t.Errorf("Substitute = %s, want %s", got, want)
	}
}
