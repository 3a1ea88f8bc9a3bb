package api

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// PublishRequest is the body of POST /api/v1/publish. Payload is text; PayloadBase64 bytes
// (one of them, or neither for an empty payload).
type PublishRequest struct {
	Topic          string            `json:"topic"`
	Payload        *string           `json:"payload,omitempty"`
	PayloadBase64  []byte            `json:"payload_base64,omitempty"`
	QoS            byte              `json:"qos"`
	Retain         bool              `json:"retain"`
	ContentType    string            `json:"content_type,omitempty"`
	UserProperties map[string]string `json:"user_properties,omitempty"`
	// Replica publishes through this broker; empty: the first that answers, in id order.
	Replica string `json:"replica,omitempty"`
}

// publish publishes a message through one replica, as the broker itself: it reaches the
// subscribers of every replica, as any message does.
func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	var req PublishRequest
	if !readJSON(w, r, &req) {
		return
	}
	p := wire.PublishRequest{Topic: req.Topic, QoS: req.QoS, Retain: req.Retain, ContentType: req.ContentType,
		UserProps: req.UserProperties, Payload: req.PayloadBase64}
	if req.Payload != nil {
		if req.PayloadBase64 != nil {
			writeError(w, http.StatusBadRequest, "payload and payload_base64: send one of them")
			return
		}
		p.Payload = []byte(*req.Payload)
	}
	if err := topic.ValidateName(p.Topic); err != nil {
		writeError(w, http.StatusBadRequest, "topic: "+err.Error())
		return
	}
	if p.QoS > 2 {
		writeError(w, http.StatusBadRequest, "qos: want 0, 1 or 2")
		return
	}
	replicas := a.o.Brokers()
	if req.Replica != "" {
		if !slices.Contains(replicas, req.Replica) {
			writeError(w, http.StatusNotFound, "no broker replica "+req.Replica)
			return
		}
		replicas = []string{req.Replica}
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	defer cancel()
	var unreachable []Unreachable
	for _, rep := range replicas {
		_, err := a.o.Bus.Request(ctx, rep, wire.OpPublish, p)
		var re *bus.RemoteError
		switch {
		case err == nil:
			a.audit(r, "publish", p.Topic, http.StatusOK, func(e *zerolog.Event) {
				e.Str("replica", rep).Int("qos", int(p.QoS)).Bool("retain", p.Retain).Int("bytes", len(p.Payload))
			})
			writeJSON(w, http.StatusOK, struct {
				Replica     string        `json:"replica"`
				Unreachable []Unreachable `json:"unreachable"`
			}{rep, append([]Unreachable{}, unreachable...)})
			return
		case errors.As(err, &re):
			a.audit(r, "publish", p.Topic, http.StatusBadRequest, nil)
			writeError(w, http.StatusBadRequest, re.Text)
			return
		}
		unreachable = append(unreachable, Unreachable{Replica: rep, Error: describe(err)})
	}
	a.audit(r, "publish", p.Topic, http.StatusServiceUnavailable, nil)
	writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "no broker replica took the message", Unreachable: unreachable})
}
