package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Page sizes of GET /api/v1/clients.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// ClientsPage is the answer of GET /api/v1/clients.
type ClientsPage struct {
	Clients []wire.ClientInfo `json:"clients"`
	// Next is the cursor of the next page (pass it as after); empty on the last page.
	Next string `json:"next,omitempty"`
	// Replicas are the brokers asked; Unreachable those that did not answer (their clients are
	// missing from the page).
	Replicas    []string      `json:"replicas"`
	Unreachable []Unreachable `json:"unreachable"`
}

// limitParam reads ?limit= (default def, at most max).
func limitParam(r *http.Request, def, max int) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, false
	}
	return n, true
}

// listClients merges the replicas' pages: each lists its first limit clients after the cursor,
// so the first limit of their union, in client id order, are the cluster's.
func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(r, defaultLimit, maxLimit)
	if !ok {
		writeError(w, http.StatusBadRequest, "limit: want a number from 1 to 1000")
		return
	}
	qv := r.URL.Query()
	q := wire.ClientsQuery{Search: qv.Get("q"), Username: qv.Get("username"), After: qv.Get("after"), Limit: limit}
	replicas := a.o.Brokers()
	answers, unreachable := a.askAll(r, replicas, wire.OpClients, q)
	page := ClientsPage{Clients: []wire.ClientInfo{}, Replicas: replicas, Unreachable: unreachable}
	more := false
	for _, ans := range answers {
		var p wire.ClientsPage
		if ans.Err != nil || json.Unmarshal(ans.Body, &p) != nil {
			page.Unreachable = append(page.Unreachable, Unreachable{Replica: ans.Replica, Error: errText(ans.Err, "bad answer")})
			continue
		}
		page.Clients = append(page.Clients, p.Clients...)
		more = more || p.More
	}
	slices.SortFunc(page.Clients, func(x, y wire.ClientInfo) int {
		if c := strings.Compare(x.ClientID, y.ClientID); c != 0 {
			return c
		}
		return strings.Compare(x.Replica, y.Replica)
	})
	if len(page.Clients) > limit {
		page.Clients, more = page.Clients[:limit], true
	}
	if more && len(page.Clients) > 0 {
		page.Next = page.Clients[len(page.Clients)-1].ClientID
	}
	if page.Replicas == nil {
		page.Replicas = []string{}
	}
	writeJSON(w, http.StatusOK, page)
}

func errText(err error, def string) string {
	if err != nil {
		return err.Error()
	}
	return def
}

// SessionAnswer is the answer of GET /api/v1/clients/{id}.
type SessionAnswer struct {
	wire.SessionInfo
	Unreachable []Unreachable `json:"unreachable"`
}

// getSession asks every replica for the session; the one holding it answers.
func (a *API) getSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	answers, unreachable := a.ask(r, wire.OpSession, wire.ClientRef{ClientID: id})
	var found *wire.SessionInfo
	for _, ans := range answers {
		var si wire.SessionInfo
		if ans.Err != nil || json.Unmarshal(ans.Body, &si) != nil {
			if !isNotHere(ans.Err) {
				unreachable = append(unreachable, Unreachable{Replica: ans.Replica, Error: errText(ans.Err, "bad answer")})
			}
			continue
		}
		// Two holders: the connected one is the session's (the other is letting go).
		if found == nil || (si.Connected && !found.Connected) {
			found = &si
		}
	}
	if found == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no replica holds a session of client " + strconv.Quote(id),
			Unreachable: unreachable})
		return
	}
	writeJSON(w, http.StatusOK, SessionAnswer{SessionInfo: *found, Unreachable: unreachable})
}

func isNotHere(err error) bool {
	var re *bus.RemoteError
	return errors.As(err, &re) && re.Text == wire.ErrTextNotHere
}

// KickAnswer is the answer of a kick and part of a ban's.
type KickAnswer struct {
	Kicked      []Kicked      `json:"kicked"`
	Unreachable []Unreachable `json:"unreachable"`
}

// Kicked is one connection a kick or a ban ended.
type Kicked struct {
	ClientID string `json:"client_id"`
	Replica  string `json:"replica"`
}

// kicked collects the replicas' KickResults.
func kicked(answers []bus.Answer, unreachable []Unreachable) KickAnswer {
	out := KickAnswer{Kicked: []Kicked{}, Unreachable: unreachable}
	for _, ans := range answers {
		var kr wire.KickResult
		if ans.Err != nil || json.Unmarshal(ans.Body, &kr) != nil {
			out.Unreachable = append(out.Unreachable, Unreachable{Replica: ans.Replica, Error: errText(ans.Err, "bad answer")})
			continue
		}
		for _, id := range kr.Kicked {
			out.Kicked = append(out.Kicked, Kicked{ClientID: id, Replica: ans.Replica})
		}
	}
	return out
}

// kick disconnects the client wherever it is connected (v5: DISCONNECT 0x98).
func (a *API) kick(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	answers, unreachable := a.ask(r, wire.OpKick, wire.ClientRef{ClientID: id})
	res := kicked(answers, unreachable)
	status := http.StatusOK
	if len(res.Kicked) == 0 {
		status = http.StatusNotFound
	}
	a.audit(r, "kick", id, status, func(e *zerolog.Event) { e.Int("kicked", len(res.Kicked)) })
	if status == http.StatusNotFound {
		writeJSON(w, status, errorBody{Error: "client " + strconv.Quote(id) + " is not connected", Unreachable: res.Unreachable})
		return
	}
	writeJSON(w, status, res)
}
