package web

import (
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// RequireToken lets a request to next through only when it carries token: as a bearer token
// (Authorization: Bearer <token>, for scripts and dashboards) or as the password of HTTP Basic
// authentication with any user name, which is what a browser asks for on the status page and then
// sends with the page's own API requests. Others get 401 with both challenges. token is asked for
// each request (it may be rotated); an empty token lets nobody through.
//
// /healthz, /readyz and /metrics stay open: the kubelet's probes and Prometheus use them, and they
// carry no addresses or error texts of the members.
func RequireToken(token func() string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		want := token()
		if want != "" && subtle.ConstantTimeCompare([]byte(presented(r)), []byte(want)) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Add("WWW-Authenticate", `Bearer realm="mcloudtt health gateway"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="mcloudtt health gateway", charset="UTF-8"`)
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "401 unauthorized: this gateway needs its API token (Authorization: Bearer <token>)",
			http.StatusUnauthorized)
	})
}

// presented returns the token a request carries, "" if none.
func presented(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, value, ok := strings.Cut(h, " ")
	if !ok {
		return ""
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return strings.TrimSpace(value)
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
		if err != nil {
			return ""
		}
		_, pw, ok := strings.Cut(string(b), ":")
		if !ok {
			return ""
		}
		return pw
	}
	return ""
}
