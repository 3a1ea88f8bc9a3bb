package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/monitor"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/probe"
)

// The page loads nothing from elsewhere: no URL in the assets but the SVG namespace.
func TestAssetsNeedNoNetwork(t *testing.T) {
	url := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		for _, u := range url.FindAllString(string(b), -1) {
			if u != "http://www.w3.org" {
				t.Errorf("%s refers to %s", p, u)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := probe.New(probe.Options{GatewayID: "gw"})
	defer p.Close()
	// No damping and no broker: the cluster is red at once, for that reason.
	mon := monitor.New(monitor.Options{GatewayID: "gw", Registerer: reg}, p)
	ready := false
	srv := httptest.NewServer(Handler(mon, func() (bool, string) { return ready, "no Redis subscription" }, reg))
	defer srv.Close()
	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, c := range []struct{ path, ctype, body string }{
		{"/", "text/html", `<table id="members">`},
		{"/assets/app.js", "javascript", "api/v1/cluster"},
		{"/assets/style.css", "text/css", "--red"},
		{"/api/v1/cluster", "application/json", `"reason": "cluster: failing for 0s: no broker sends heartbeats"`},
		{"/metrics", "text/plain", "mcloudtt_gateway_cluster_green 0"},
		{"/healthz", "", "ok"},
	} {
		code, ctype, body := get(c.path)
		if code != 200 || !strings.Contains(ctype, c.ctype) || !strings.Contains(body, c.body) {
			t.Errorf("GET %s: %d %q, body without %q:\n%.300s", c.path, code, ctype, c.body, body)
		}
	}
	if code, _, body := get("/readyz"); code != 503 || !strings.Contains(body, "no Redis subscription") {
		t.Errorf("/readyz while not ready: %d %s", code, body)
	}
	ready = true
	if code, _, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz while ready: %d", code)
	}
	if code, _, _ := get("/nothing"); code != 404 {
		t.Errorf("GET /nothing: %d", code)
	}
}
