package service

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// mcloudtt_redis_connected follows the link's state at every scrape.
func TestRedisLinkGauge(t *testing.T) {
	var up atomic.Bool
	reg := prometheus.NewRegistry()
	reg.MustRegister(RedisLink(up.Load))
	value := func() float64 {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) != 1 || mfs[0].GetName() != "mcloudtt_redis_connected" || !strings.Contains(mfs[0].GetHelp(), "Redis link") {
			t.Fatalf("gathered %v, %v; want the one gauge mcloudtt_redis_connected", mfs, err)
		}
		return mfs[0].GetMetric()[0].GetGauge().GetValue()
	}
	if v := value(); v != 0 {
		t.Errorf("link down: %v, want 0", v)
	}
	up.Store(true)
	if v := value(); v != 1 {
		t.Errorf("link up: %v, want 1", v)
	}
	up.Store(false)
	if v := value(); v != 0 {
		t.Errorf("link down again: %v, want 0", v)
	}
}
