// Package api is the gateway's management REST API under /api/v1: the connected clients of the
// whole cluster (list, search, one session, kick), bans, retained messages, publishing, and the
// public keys of the JWT device registry (list, add, remove, in Redis). The
// gateway reaches every broker replica through the bus (a request on the replica's control
// channel, pkg/bus request.go), so the API works with any number of replicas; a replica that
// does not answer within Options.Timeout is named in the answer (unreachable), never waited on
// longer. Reads need the read-only or the admin token, changes the admin token; every change is
// written to the log as an audit line. openapi.json describes every route and is served at
// /api/v1/openapi.json.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/web"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI document of the API.
func OpenAPI() []byte { return openAPI }

// Bus is what the API needs of the bus (a *bus.Bus).
type Bus interface {
	Request(ctx context.Context, replica, op string, body any) (json.RawMessage, error)
	RequestAll(ctx context.Context, replicas []string, op string, body any) []bus.Answer
	AddBan(ctx context.Context, ban wire.Ban) error
	RemoveBan(ctx context.Context, kind, value string) (bool, error)
	Bans(ctx context.Context) ([]wire.Ban, error)
	ScanRetained(ctx context.Context, fn func(topic string, value []byte)) error
	WriteRetained(ctx context.Context, ws []bus.RetainedWrite) error
}

// Options configure the API.
type Options struct {
	Bus Bus
	// Brokers returns the broker replicas the gateway knows of (live, or silent and not yet
	// forgotten), in id order: every request goes to each.
	Brokers func() []string
	// Timeout bounds the wait for the replicas' answers.
	Timeout time.Duration
	// Devices is the device registry of JWT authentication; nil: the device routes answer 503.
	Devices Devices
	// MaxDeviceKeys is how many keys a device may have (GATEWAY_JWT_MAX_KEYS).
	MaxDeviceKeys int
	// Log receives the audit lines (one per change, with audit=true) and errors.
	Log zerolog.Logger
}

// API serves the management routes.
type API struct {
	o Options
}

// New returns the API.
func New(o Options) *API { return &API{o: o} }

// route is one route of the API; admin routes are changes.
type route struct {
	pattern string
	admin   bool
	h       http.HandlerFunc
}

func (a *API) routes() []route {
	return []route{
		{"GET /api/v1/openapi.json", false, a.openapi},
		{"GET /api/v1/whoami", false, a.whoami},
		{"GET /api/v1/clients", false, a.listClients},
		{"GET /api/v1/clients/{id}", false, a.getSession},
		{"POST /api/v1/clients/{id}/kick", true, a.kick},
		{"GET /api/v1/devices/{id}/keys", false, a.listDeviceKeys},
		{"POST /api/v1/devices/{id}/keys", true, a.addDeviceKey},
		{"DELETE /api/v1/devices/{id}/keys/{keyid}", true, a.removeDeviceKey},
		{"GET /api/v1/bans", false, a.listBans},
		{"POST /api/v1/bans", true, a.addBan},
		{"DELETE /api/v1/bans/{kind}/{value...}", true, a.removeBan},
		{"GET /api/v1/retained", false, a.listRetained},
		{"GET /api/v1/retained/{topic...}", false, a.getRetained},
		{"DELETE /api/v1/retained/{topic...}", true, a.deleteRetained},
		{"POST /api/v1/publish", true, a.publish},
	}
}

// Patterns returns the method and path of every route ("GET /api/v1/clients").
func (a *API) Patterns() []string {
	var out []string
	for _, r := range a.routes() {
		out = append(out, r.pattern)
	}
	return out
}

// Register adds the routes to mux. The requests must have passed web.Authenticate.
func (a *API) Register(mux *http.ServeMux) {
	for _, r := range a.routes() {
		h := r.h
		if r.admin {
			h = adminOnly(h)
		}
		mux.HandleFunc(r.pattern, h)
	}
}

// adminOnly refuses a change to a request without the admin token: 401 without a token, 403
// with the read-only one. A change sent by a page of another origin is refused too (403): a
// browser sends the Basic credentials it holds for the gateway with any site's form, so without
// this check another site could make an operator's browser kick or ban.
func adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" {
			if u, err := url.Parse(origin); err != nil || u.Host != r.Host {
				writeError(w, http.StatusForbidden, "a change from a page of another origin ("+origin+") is refused")
				return
			}
		}
		switch web.RoleOf(r) {
		case web.RoleAdmin:
			next(w, r)
		case web.RoleReadOnly:
			writeError(w, http.StatusForbidden, "this change needs the admin token (GATEWAY_ADMIN_TOKEN); the token sent is read-only")
		default:
			web.Unauthorized(w)
		}
	}
}

func (a *API) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}

func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"role": string(web.RoleOf(r))})
}

// Unreachable names a replica that did not answer, and why.
type Unreachable struct {
	Replica string `json:"replica"`
	Error   string `json:"error"`
}

// ask sends op to every broker and returns the answers of those that answered and the others.
func (a *API) ask(r *http.Request, op string, body any) (ok []bus.Answer, unreachable []Unreachable) {
	return a.askAll(r, a.o.Brokers(), op, body)
}

// askAll sends op to the replicas and returns the answers of those that answered and the others.
func (a *API) askAll(r *http.Request, replicas []string, op string, body any) (ok []bus.Answer, unreachable []Unreachable) {
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	defer cancel()
	unreachable = []Unreachable{}
	for _, ans := range a.o.Bus.RequestAll(ctx, replicas, op, body) {
		var re *bus.RemoteError
		switch {
		case ans.Err == nil, errors.As(ans.Err, &re):
			ok = append(ok, ans)
		default:
			unreachable = append(unreachable, Unreachable{Replica: ans.Replica, Error: describe(ans.Err)})
		}
	}
	return ok, unreachable
}

// describe says why a replica did not answer, in words an operator reads.
func describe(err error) string {
	switch {
	case errors.Is(err, bus.ErrNoReply):
		return "no answer in time: " + err.Error()
	case errors.Is(err, bus.ErrNoReceiver):
		return "not connected to the bus (stopped, or cut off from Redis)"
	}
	return err.Error()
}

// audit writes one audit line: who (the token's role) did what to which target, and the outcome.
func (a *API) audit(r *http.Request, action, target string, status int, detail func(*zerolog.Event)) {
	ev := a.o.Log.Info().Bool("audit", true).Str("who", string(web.RoleOf(r))).Str("action", action).
		Str("target", target).Int("status", status).Str("remote", r.RemoteAddr)
	if detail != nil {
		detail(ev)
	}
	ev.Msg("audit: " + action + " " + target)
}

// errorBody is every error answer.
type errorBody struct {
	Error       string        `json:"error"`
	Unreachable []Unreachable `json:"unreachable,omitempty"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readJSON decodes a request body of at most 1 MiB + 64 KiB (a publish's payload), refusing
// unknown fields.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad request body: %v", err))
		return false
	}
	return true
}
