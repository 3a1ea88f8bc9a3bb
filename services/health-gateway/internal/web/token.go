package web

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
)

// Role is what a request may do, decided by the token it carries.
type Role string

// Roles.
const (
	// RoleAnonymous: no token was presented and none is required for reading (no
	// GATEWAY_API_TOKEN): the page and the read-only API answer, changes are refused (401).
	RoleAnonymous Role = "anonymous"
	// RoleReadOnly: the API token (GATEWAY_API_TOKEN): the page and every GET; changes 403.
	RoleReadOnly Role = "read-only"
	// RoleAdmin: the admin token (GATEWAY_ADMIN_TOKEN): everything, changes included.
	RoleAdmin Role = "admin"
)

// Tokens are the tokens the gateway accepts, each asked for per request (they may be rotated);
// a nil func or an empty token matches nothing. Open lets requests without a token read (the
// gateway has no read token).
type Tokens struct {
	Read, Admin func() string
	Open        bool
}

type roleKey struct{}

// RoleOf returns the role Authenticate gave the request ("" when it did not pass through it).
func RoleOf(r *http.Request) Role {
	role, _ := r.Context().Value(roleKey{}).(Role)
	return role
}

// RequireToken lets a request to next through only when it carries token (see Authenticate);
// its role is read-only.
func RequireToken(token func() string, next http.Handler) http.Handler {
	return Authenticate(Tokens{Read: token}, next)
}

// Authenticate gives every request the role of the token it carries: as a bearer token
// (Authorization: Bearer <token>, for scripts and dashboards) or as the password of HTTP Basic
// authentication with any user name, which is what a browser asks for on the status page and then
// sends with the page's own API requests. A request with no token is anonymous when tokens.Open;
// any other gets 401 with both challenges. What each role may do is checked by the handlers
// (RoleOf).
//
// /healthz, /readyz and /metrics stay open: the kubelet's probes and Prometheus use them, and they
// carry no addresses or error texts of the members.
func Authenticate(tokens Tokens, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		got := presented(r)
		var role Role
		switch {
		case matches(got, tokens.Admin):
			role = RoleAdmin
		case matches(got, tokens.Read):
			role = RoleReadOnly
		case got == "" && tokens.Open && r.Header.Get("Authorization") == "":
			role = RoleAnonymous
		default:
			Unauthorized(w)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), roleKey{}, role)))
	})
}

// Unauthorized answers 401 with the bearer and Basic challenges.
func Unauthorized(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Bearer realm="mcloudtt health gateway"`)
	w.Header().Add("WWW-Authenticate", `Basic realm="mcloudtt health gateway", charset="UTF-8"`)
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "401 unauthorized: this gateway needs its API token (Authorization: Bearer <token>)",
		http.StatusUnauthorized)
}

// matches compares got with the token in constant time; an empty token matches nothing.
func matches(got string, token func() string) bool {
	if token == nil || got == "" {
		return false
	}
	want := token()
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
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
