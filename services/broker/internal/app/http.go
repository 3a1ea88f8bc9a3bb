package app

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/service"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// httpHandler serves the replica's probes, /metrics (cs) and, with BROKER_PPROF, /debug/pprof.
func httpHandler(cfg config.Config, ready service.Ready, cs ...prometheus.Collector) http.Handler {
	mux := http.NewServeMux()
	service.Routes(mux, ready, service.NewRegistry(cs...))
	if cfg.Pprof {
		service.Pprof(mux)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	}
	return mux
}

// metricCollectors are the broker's metrics, the limits the alert rules compare them with
// (BROKER_MAX_CONNECTIONS, BROKER_MAX_QUEUED_MESSAGES; 0: no limit) and, in a cluster, the Redis
// link's state.
func metricCollectors(cfg config.Config, srv *broker.Server, b *bus.Bus) []prometheus.Collector {
	limit := func(name, help string, v int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(v) })
	}
	cs := []prometheus.Collector{srv.Collector(),
		limit("mcloudtt_broker_max_connections", "BROKER_MAX_CONNECTIONS: the bound on connected clients (0: none).",
			cfg.MaxConnections),
		limit("mcloudtt_broker_max_queued_messages", "BROKER_MAX_QUEUED_MESSAGES: the bound on messages queued per session (0: none).",
			cfg.MaxQueuedMessages)}
	if b != nil {
		cs = append(cs, service.RedisLink(func() bool { return b.Status().Connected }))
	}
	return cs
}
