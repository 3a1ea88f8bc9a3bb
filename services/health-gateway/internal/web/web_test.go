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

// With a token, the page, its assets and the API answer 401 without it, with both challenges, and
// answer with it as a bearer token or as a Basic password (what a browser sends); the probes'
// and Prometheus' endpoints stay open. A rotated token takes effect at once.
func TestAPIToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := probe.New(probe.Options{GatewayID: "gw"})
	defer p.Close()
	mon := monitor.New(monitor.Options{GatewayID: "gw", Registerer: reg}, p)
	token := "s3cret-token-0123456789"
	srv := httptest.NewServer(RequireToken(func() string { return token },
		Handler(mon, func() (bool, string) { return true, "" }, reg)))
	defer srv.Close()
	do := func(path string, set func(*http.Request)) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if set != nil {
			set(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, path := range []string{"/api/v1/cluster", "/", "/assets/app.js"} {
		resp, body := do(path, nil)
		if resp.StatusCode != 401 || strings.Contains(body, "members") {
			t.Errorf("GET %s without the token: %d %.80s", path, resp.StatusCode, body)
		}
		if ch := resp.Header.Values("WWW-Authenticate"); len(ch) != 2 || !strings.HasPrefix(ch[0], "Bearer") || !strings.HasPrefix(ch[1], "Basic") {
			t.Errorf("GET %s: challenges %q", path, ch)
		}
		for _, wrong := range []func(*http.Request){bearer("nope"), bearer(token + "x"), bearer(""),
			func(r *http.Request) { r.Header.Set("Authorization", token) },
			func(r *http.Request) { r.SetBasicAuth(token, "x") }} {
			if resp, _ := do(path, wrong); resp.StatusCode != 401 {
				t.Errorf("GET %s with a wrong token: %d", path, resp.StatusCode)
			}
		}
		if resp, _ := do(path, bearer(token)); resp.StatusCode != 200 {
			t.Errorf("GET %s with the bearer token: %d", path, resp.StatusCode)
		}
		if resp, _ := do(path, func(r *http.Request) { r.SetBasicAuth("operator", token) }); resp.StatusCode != 200 {
			t.Errorf("GET %s with the token as Basic password: %d", path, resp.StatusCode)
		}
	}
	if _, body := do("/api/v1/cluster", bearer(token)); !strings.Contains(body, `"members"`) {
		t.Errorf("API body: %.200s", body)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, _ := do(path, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s without the token: %d, want 200", path, resp.StatusCode)
		}
	}
	old := token
	token = "rotated-token-9876543210"
	if resp, _ := do("/api/v1/cluster", bearer(old)); resp.StatusCode != 401 {
		t.Error("old token still accepted after rotation")
	}
	if resp, _ := do("/api/v1/cluster", bearer(token)); resp.StatusCode != 200 {
		t.Error("rotated token refused")
	}
	token = ""
	if resp, _ := do("/api/v1/cluster", bearer("")); resp.StatusCode != 401 {
		t.Error("an empty token lets requests through")
	}
}
