package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/web"
)

// A change needs the admin token, and is refused from a page of another origin even with it
// (a browser would send its stored credentials with another site's form).
func TestAdminOnly(t *testing.T) {
	changed := false
	h := web.Authenticate(web.Tokens{Read: func() string { return "read-token-0123456789" },
		Admin: func() string { return "admin-token-0123456789" }},
		adminOnly(func(w http.ResponseWriter, _ *http.Request) { changed = true }))
	for _, tc := range []struct {
		token, origin string
		want          int
	}{
		{"", "", 401},
		{"read-token-0123456789", "", 403},
		{"admin-token-0123456789", "https://evil.example", 403},
		{"admin-token-0123456789", "http://gateway:8090", 200},
		{"admin-token-0123456789", "", 200},
	} {
		changed = false
		req := httptest.NewRequest("POST", "http://gateway:8090/api/v1/clients/x/kick", nil)
		if tc.token != "" {
			req.SetBasicAuth("operator", tc.token)
		}
		if tc.origin != "" {
			req.Header.Set("Origin", tc.origin)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want || changed != (tc.want == 200) {
			t.Errorf("token %q origin %q: %d (changed %v), want %d", tc.token, tc.origin, rec.Code, changed, tc.want)
		}
	}
}
