package broker

import (
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
)

// Messages between replicas: the core's message as a pkg/bus envelope message and back.

// remoteHints tell the router what a forwarded message is for on this replica.
type remoteHints struct {
	plain  bool     // deliver to non-shared subscriptions
	groups []string // shared groups ("group/filter") this replica serves the message to
}

func (h *remoteHints) hasGroup(group, filter string) bool {
	for _, g := range h.groups {
		if len(g) == len(group)+1+len(filter) && g[:len(group)] == group && g[len(group)] == '/' && g[len(group)+1:] == filter {
			return true
		}
	}
	return false
}

// toBus fills bm from m, for the envelope.
func toBus(bm *bus.Message, m *message, origin string) {
	*bm = bus.Message{ID: m.ID, Origin: origin, ClientID: m.From, Username: m.Username, Topic: m.Topic,
		Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Created: m.Created.UnixNano()}
	if !m.Expires.IsZero() {
		bm.Expiry = m.Expires.UnixNano()
	}
	p := m.Props
	if p == nil {
		return
	}
	if p.has(mqtt.PropPayloadFormat) {
		bm.Props |= bus.PropPayloadFormat
		bm.PayloadFormat = p.PayloadFormat
	}
	if p.has(mqtt.PropContentType) {
		bm.Props |= bus.PropContentType
		bm.ContentType = p.ContentType
	}
	if p.has(mqtt.PropResponseTopic) {
		bm.Props |= bus.PropResponseTopic
		bm.ResponseTopic = p.ResponseTopic
	}
	if p.has(mqtt.PropCorrelationData) {
		bm.Props |= bus.PropCorrelationData
		bm.CorrelationData = p.CorrelationData
	}
	bm.UserProperties = p.User
}

// fromBus makes a message of a received envelope message; it aliases the batch.
func fromBus(bm *bus.Message) *message {
	m := &message{ID: bm.ID, Topic: bm.Topic, Payload: bm.Payload, QoS: bm.QoS, Retain: bm.Retain,
		From: bm.ClientID, Username: bm.Username, Created: time.Unix(0, bm.Created)}
	if bm.Expiry != 0 {
		m.Expires = time.Unix(0, bm.Expiry)
	}
	if bm.Props == 0 && len(bm.UserProperties) == 0 {
		return m
	}
	p := &messageProps{}
	if bm.Props&bus.PropPayloadFormat != 0 {
		p.PayloadFormat = bm.PayloadFormat
		p.Present |= 1 << mqtt.PropPayloadFormat
	}
	if bm.Props&bus.PropContentType != 0 {
		p.ContentType = bm.ContentType
		p.Present |= 1 << mqtt.PropContentType
	}
	if bm.Props&bus.PropResponseTopic != 0 {
		p.ResponseTopic = bm.ResponseTopic
		p.Present |= 1 << mqtt.PropResponseTopic
	}
	if bm.Props&bus.PropCorrelationData != 0 {
		p.CorrelationData = bm.CorrelationData
		p.Present |= 1 << mqtt.PropCorrelationData
	}
	if len(bm.UserProperties) > 0 {
		p.User = bm.UserProperties
		p.Present |= 1 << mqtt.PropUserProperty
	}
	m.Props = p
	return m
}

// forwardable reports whether messages on name travel between replicas: everything but the
// replica's own $SYS topics (probe topics do travel: that is what they test).
func forwardable(name string) bool {
	return !topic.IsSystem(name) || strings.HasPrefix(name, bus.ProbeTopicPrefix)
}
