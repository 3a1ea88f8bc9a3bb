package api

import (
	"context"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/web"
)

// maxBan bounds a ban's duration (EMQX and mosquitto have none; a year keeps typos finite).
const maxBan = 366 * 24 * time.Hour

// BanRequest is the body of POST /api/v1/bans.
type BanRequest struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// DurationSeconds is how long the ban lasts.
	DurationSeconds int64  `json:"duration_seconds"`
	Reason          string `json:"reason,omitempty"`
}

// BansAnswer is the answer of GET /api/v1/bans.
type BansAnswer struct {
	Bans []wire.Ban `json:"bans"`
}

// BanAnswer is the answer of POST /api/v1/bans: the ban and the clients it disconnected.
type BanAnswer struct {
	Ban wire.Ban `json:"ban"`
	KickAnswer
}

func (a *API) listBans(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	defer cancel()
	bans, err := a.o.Bus.Bans(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, BansAnswer{Bans: bans})
}

// addBan stores the ban in Redis, then tells every replica, which kicks the matching clients.
// A replica that does not hear it reads the bans from Redis again within seconds.
func (a *API) addBan(w http.ResponseWriter, r *http.Request) {
	var req BanRequest
	if !readJSON(w, r, &req) {
		return
	}
	d := time.Duration(req.DurationSeconds) * time.Second
	if req.DurationSeconds <= 0 || d > maxBan {
		writeError(w, http.StatusBadRequest, "duration_seconds: want 1 to 31622400 (366 days)")
		return
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	ban := wire.Ban{Kind: req.Kind, Value: req.Value, Reason: req.Reason, By: string(web.RoleOf(r)),
		Created: now, Until: now.Add(d)}
	if err := ban.Check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	err := a.o.Bus.AddBan(ctx, ban)
	cancel()
	if err != nil {
		a.audit(r, "ban", ban.Key(), http.StatusServiceUnavailable, nil)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	answers, unreachable := a.ask(r, wire.OpBan, ban)
	res := BanAnswer{Ban: ban, KickAnswer: kicked(answers, unreachable)}
	a.audit(r, "ban", ban.Key(), http.StatusCreated, func(e *zerolog.Event) {
		e.Time("until", ban.Until).Str("reason", ban.Reason).Int("kicked", len(res.Kicked))
	})
	writeJSON(w, http.StatusCreated, res)
}

// removeBan lifts a ban in Redis and on every replica.
func (a *API) removeBan(w http.ResponseWriter, r *http.Request) {
	ban := wire.Ban{Kind: r.PathValue("kind"), Value: r.PathValue("value")}
	if err := ban.Check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	found, err := a.o.Bus.RemoveBan(ctx, ban.Kind, ban.Value)
	cancel()
	if err != nil {
		a.audit(r, "unban", ban.Key(), http.StatusServiceUnavailable, nil)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	// Every replica forgets it, found or not (one may hold a copy Redis no longer has).
	_, unreachable := a.ask(r, wire.OpUnban, ban)
	status := http.StatusOK
	if !found {
		status = http.StatusNotFound
	}
	a.audit(r, "unban", ban.Key(), status, nil)
	if !found {
		writeJSON(w, status, errorBody{Error: "no ban " + ban.Key(), Unreachable: unreachable})
		return
	}
	writeJSON(w, status, struct {
		Lifted      string        `json:"lifted"`
		Unreachable []Unreachable `json:"unreachable"`
	}{ban.Key(), unreachable})
}
