package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry is a Prometheus registry holding the Go runtime and process collectors and cs.
func NewRegistry(cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(cs...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// RedisLink is the gauge mcloudtt_redis_connected, read at scrape time: 1 while connected says the
// service's Redis link (its bus subscription) is up, 0 while it is down. Every service that uses
// Redis registers it, so one alert covers the broker, the adapter and the gateway.
func RedisLink(connected func() bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mcloudtt_redis_connected",
		Help: "1 while this process's Redis link (its bus subscription) is up, 0 while it is down."},
		func() float64 {
			if connected() {
				return 1
			}
			return 0
		})
}

// Ready says whether the service is ready and, when not, why: the body of the 503 answer.
type Ready func() (ok bool, why string)

// Routes adds the routes every service answers on mux: GET /healthz ("ok"; the process lives),
// GET /readyz ("ready", or 503 Service Unavailable with why from ready) and GET /metrics (what g
// gathers, in the Prometheus text format).
func Routes(mux *http.ServeMux, ready Ready, g prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := ready(); !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}

// Pprof adds the profiling handlers to mux: /debug/pprof/ (the index and the named profiles),
// /debug/pprof/profile, /debug/pprof/symbol and /debug/pprof/trace.
func Pprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// HTTP is a service's HTTP server on its own listener.
type HTTP struct {
	ln     net.Listener
	srv    *http.Server
	failed chan error
}

// Listen opens the HTTP listener on addr; Start serves on it.
func Listen(addr string) (*HTTP, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &HTTP{ln: ln, failed: make(chan error, 1)}, nil
}

// Addr is the address the server listens on.
func (h *HTTP) Addr() string { return h.ln.Addr().String() }

// Start serves handler in the background (headers must arrive within 5 s).
func (h *HTTP) Start(handler http.Handler) {
	h.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.failed <- fmt.Errorf("http server: %w", err)
		}
	}()
}

// Failed delivers the error that stopped the server, if it stops before Shutdown. It is nil for
// a nil *HTTP (no server), so a select on it waits forever.
func (h *HTTP) Failed() <-chan error {
	if h == nil {
		return nil
	}
	return h.failed
}

// Shutdown stops the server gracefully within ctx; before Start it closes the listener.
func (h *HTTP) Shutdown(ctx context.Context) error {
	if h.srv == nil {
		return h.ln.Close()
	}
	if err := h.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// Close closes the listener of a server not started (a service that fails while it starts).
func (h *HTTP) Close() error { return h.ln.Close() }
