package listener

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// An origin allow-list entry: scheme and host (with port, if any), or a host pattern "*.example.com"
// that matches every subdomain of example.com (not example.com itself).
type originRule struct {
	scheme, host string
	wildcard     bool // host is ".example.com"
}

// ParseOrigin checks one allow-list entry: "https://app.example.com", "http://localhost:8080" or
// "https://*.example.com". Browsers send the Origin of the page that opens the WebSocket in this
// form (RFC 6454): a scheme, a host, an optional port, nothing else.
func ParseOrigin(s string) error {
	_, err := parseOrigin(s)
	return err
}

func parseOrigin(s string) (originRule, error) {
	u, err := url.Parse(s)
	if err != nil {
		return originRule{}, fmt.Errorf("origin %q: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return originRule{}, fmt.Errorf("origin %q: want http:// or https://", s)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return originRule{}, fmt.Errorf("origin %q: want scheme://host[:port] and nothing else", s)
	}
	host := strings.ToLower(u.Host)
	r := originRule{scheme: u.Scheme, host: host}
	if strings.HasPrefix(host, "*.") {
		r.host, r.wildcard = host[1:], true
		if len(r.host) < 2 || strings.Contains(r.host[1:], "*") {
			return originRule{}, fmt.Errorf("origin %q: a wildcard stands only for the leftmost label", s)
		}
	} else if strings.Contains(host, "*") {
		return originRule{}, fmt.Errorf("origin %q: a wildcard stands only for the leftmost label", s)
	}
	return r, nil
}

// OriginAllowList returns a WebSocketOptions.CheckOrigin that accepts an upgrade request whose
// Origin header is one of origins (see ParseOrigin; compared without regard to case), and one
// without an Origin header: browsers always send it on a WebSocket upgrade, other MQTT clients
// (devices, libraries) need not, and they are not the page-in-a-browser this check guards against.
// A refused request is answered 403.
func OriginAllowList(origins []string) (func(*http.Request) bool, error) {
	rules := make([]originRule, 0, len(origins))
	for _, o := range origins {
		r, err := parseOrigin(o)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return func(req *http.Request) bool {
		origin := req.Header.Get("Origin")
		if origin == "" {
			return true
		}
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			return false
		}
		host := strings.ToLower(u.Host)
		for _, r := range rules {
			if r.scheme != u.Scheme {
				continue
			}
			if host == r.host || (r.wildcard && strings.HasSuffix(host, r.host) && len(host) > len(r.host)) {
				return true
			}
		}
		return false
	}, nil
}
