// Package web serves the gateway's HTTP endpoints: /healthz, /readyz, /metrics, the JSON API
// GET /api/v1/cluster, and the status page at / with its assets embedded in the binary (no CDN,
// nothing fetched from elsewhere); the page refreshes itself from the JSON API.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcloudtt/mcloudtt/pkg/service"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/monitor"
)

//go:embed assets
var assets embed.FS

// Handler returns the gateway's HTTP handler. ready reports the gateway's own readiness and why
// not; gatherer serves /metrics; more adds routes (the management API).
func Handler(mon *monitor.Monitor, ready func() (bool, string), gatherer prometheus.Gatherer, more ...func(*http.ServeMux)) http.Handler {
	mux := http.NewServeMux()
	for _, add := range more {
		add(mux)
	}
	service.Routes(mux, func() (bool, string) {
		ok, why := ready()
		return ok, "not ready: " + why
	}, gatherer)
	mux.HandleFunc("GET /api/v1/cluster", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(mon.Snapshot())
	})
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded directory exists at build time
	}
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "index.html")
	})
	return mux
}
