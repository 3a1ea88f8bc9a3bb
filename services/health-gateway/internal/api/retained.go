package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// Retained is one retained message.
type Retained struct {
	Topic       string `json:"topic"`
	Payload     []byte `json:"payload"` // base64 in JSON
	PayloadText string `json:"payload_text,omitempty"`
	QoS         byte   `json:"qos"`
	ContentType string `json:"content_type,omitempty"`
	// PublishedAt is when the broker accepted it; From its publisher's client id.
	PublishedAt time.Time `json:"published_at"`
	From        string    `json:"from,omitempty"`
}

// RetainedPage is the answer of GET /api/v1/retained.
type RetainedPage struct {
	Messages []Retained `json:"messages"`
	Next     string     `json:"next,omitempty"` // pass as after for the next page
}

func toRetained(m *bus.Message) Retained {
	out := Retained{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, PublishedAt: time.Unix(0, m.Created).UTC(),
		From: m.ClientID, ContentType: m.ContentType}
	if utf8.Valid(m.Payload) {
		out.PayloadText = string(m.Payload)
	}
	return out
}

// retained reads the cluster's retained messages (Redis holds them all) matching filter.
func (a *API) retained(r *http.Request, filter string) ([]Retained, error) {
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	defer cancel()
	var out []Retained
	err := a.o.Bus.ScanRetained(ctx, func(name string, value []byte) {
		if !topic.Match(filter, name) {
			return
		}
		msgs, err := bus.DecodeBatch(value)
		if err != nil || len(msgs) == 0 {
			return
		}
		out = append(out, toRetained(&msgs[0]))
	})
	slices.SortFunc(out, func(x, y Retained) int { return strings.Compare(x.Topic, y.Topic) })
	return out, err
}

// listRetained lists the retained messages matching ?filter= (default #), a page at a time.
func (a *API) listRetained(w http.ResponseWriter, r *http.Request) {
	filter := r.URL.Query().Get("filter")
	if filter == "" {
		filter = "#"
	}
	if err := topic.ValidateFilter(filter); err != nil {
		writeError(w, http.StatusBadRequest, "filter: "+err.Error())
		return
	}
	limit, ok := limitParam(r, defaultLimit, maxLimit)
	if !ok {
		writeError(w, http.StatusBadRequest, "limit: want a number from 1 to 1000")
		return
	}
	all, err := a.retained(r, filter)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	after := r.URL.Query().Get("after")
	i, _ := slices.BinarySearchFunc(all, after, func(m Retained, t string) int { return strings.Compare(m.Topic, t) })
	if i < len(all) && after != "" && all[i].Topic == after {
		i++
	}
	page := RetainedPage{Messages: all[i:]}
	if len(page.Messages) > limit {
		page.Messages = page.Messages[:limit]
		page.Next = page.Messages[limit-1].Topic
	}
	if page.Messages == nil {
		page.Messages = []Retained{}
	}
	writeJSON(w, http.StatusOK, page)
}

// retainedTopic is the {topic...} of the path, checked as a topic name (no wildcards).
func retainedTopic(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("topic")
	if err := topic.ValidateName(t); err != nil {
		writeError(w, http.StatusBadRequest, "topic: "+err.Error())
		return "", false
	}
	return t, true
}

func (a *API) getRetained(w http.ResponseWriter, r *http.Request) {
	t, ok := retainedTopic(w, r)
	if !ok {
		return
	}
	all, err := a.retained(r, t)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if len(all) == 0 {
		writeError(w, http.StatusNotFound, "no retained message on "+strconv.Quote(t))
		return
	}
	writeJSON(w, http.StatusOK, all[0])
}

// deleteRetained removes a retained message from Redis and from every replica's copy: new
// subscribers no longer receive it (current subscribers are not sent anything).
func (a *API) deleteRetained(w http.ResponseWriter, r *http.Request) {
	t, ok := retainedTopic(w, r)
	if !ok {
		return
	}
	all, err := a.retained(r, t)
	if err == nil && len(all) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
		err = a.o.Bus.WriteRetained(ctx, []bus.RetainedWrite{{Topic: t}})
		cancel()
	}
	if err != nil {
		a.audit(r, "retained.delete", t, http.StatusServiceUnavailable, nil)
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if len(all) == 0 {
		a.audit(r, "retained.delete", t, http.StatusNotFound, nil)
		writeError(w, http.StatusNotFound, "no retained message on "+strconv.Quote(t))
		return
	}
	_, unreachable := a.ask(r, wire.OpRetainedDelete, wire.RetainedRef{Topic: t})
	a.audit(r, "retained.delete", t, http.StatusOK, func(e *zerolog.Event) { e.Int("unreachable", len(unreachable)) })
	writeJSON(w, http.StatusOK, struct {
		Deleted     string        `json:"deleted"`
		Unreachable []Unreachable `json:"unreachable"`
	}{t, unreachable})
}
