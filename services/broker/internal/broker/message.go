// Package broker is one MCloudTT broker replica: listeners, connections, sessions, the
// subscription index and the publish path.
//
// Lock order: Server.mu, then session.mu, then outbound.mu. A goroutine holding a later lock never
// takes an earlier one.
package broker

import (
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// message is an application message inside the broker. It is immutable once routed: every
// subscriber, queue and retained store shares the same value.
type message struct {
	// ID identifies the message across the cluster and in the export (BigQuery's message_id).
	ID      bus.MessageID
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props holds the v5 properties that travel with the message, nil when it has none (every 3.x
	// message). Message expiry is kept as Expires instead, so that forwarding can count it down.
	Props *messageProps
	// Expires is when the message expires; zero means never.
	Expires time.Time
	// From is the client id of the publisher (for no-local), empty for broker-made messages.
	From string
	// Username is the publisher's user name, if it had one.
	Username string
	// Created is when the broker accepted the message.
	Created time.Time
}

// messageProps are the properties the server forwards unchanged [MQTT-3.3.2-4], [MQTT-3.3.2-15],
// [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.2-20]. They live apart from message, which stays small
// (a message is allocated for every PUBLISH, and most carry no properties).
type messageProps struct {
	Present         mqtt.PropSet // which of the fields below were sent (forwardedProps only)
	PayloadFormat   byte
	ContentType     string
	ResponseTopic   string
	CorrelationData []byte
	User            []mqtt.UserProperty
}

// newMessageProps keeps the forwarded properties of pp; nil when there are none.
func newMessageProps(pp *mqtt.Properties) *messageProps {
	if pp.Present&forwardedProps == 0 {
		return nil
	}
	return &messageProps{Present: pp.Present & forwardedProps, PayloadFormat: pp.PayloadFormat, ContentType: pp.ContentType,
		ResponseTopic: pp.ResponseTopic, CorrelationData: pp.CorrelationData, User: pp.User}
}

// has reports whether property id is present; mp may be nil.
func (mp *messageProps) has(id mqtt.PropID) bool { return mp != nil && mp.Present.Has(id) }

// copyTo sets the properties on an outgoing PUBLISH's; mp may be nil.
func (mp *messageProps) copyTo(p *mqtt.Properties) {
	if mp == nil {
		return
	}
	p.Present |= mp.Present
	p.PayloadFormat, p.ContentType, p.ResponseTopic = mp.PayloadFormat, mp.ContentType, mp.ResponseTopic
	p.CorrelationData, p.User = mp.CorrelationData, mp.User
}

// forwardedProps are the properties the server forwards unchanged [MQTT-3.3.2-4], [MQTT-3.3.2-15],
// [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.2-20].
const forwardedProps = 1<<mqtt.PropPayloadFormat | 1<<mqtt.PropContentType | 1<<mqtt.PropResponseTopic |
	1<<mqtt.PropCorrelationData | 1<<mqtt.PropUserProperty

// newMessage builds a message from a received PUBLISH. The publish's strings and payload alias the
// packet body, which is owned by the message from here on.
func newMessage(p *mqtt.Publish, topic, from, username string, now time.Time) *message {
	m := &message{ID: bus.NewMessageIDAt(now.UnixNano()), Topic: topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, From: from, Username: username, Created: now}
	pp := &p.Properties
	if pp.Present != 0 {
		m.Props = newMessageProps(pp)
		if pp.Has(mqtt.PropMessageExpiry) {
			m.Expires = now.Add(time.Duration(pp.MessageExpiry) * time.Second)
		}
	}
	return m
}

// expired reports whether the message's expiry interval has passed.
func (m *message) expired(now time.Time) bool {
	return !m.Expires.IsZero() && !now.Before(m.Expires)
}

// remainingExpiry is the Message Expiry Interval to send now: the received value minus the time the
// message waited in the broker [MQTT-3.3.2-6]. ok is false when the message has no expiry.
func (m *message) remainingExpiry(now time.Time) (secs uint32, ok bool) {
	if m.Expires.IsZero() {
		return 0, false
	}
	d := m.Expires.Sub(now)
	if d <= 0 {
		return 0, true
	}
	s := uint32((d + time.Second - 1) / time.Second)
	return s, true
}

// size approximates the bytes a message holds, for queue byte limits.
func (m *message) size() int64 { return int64(len(m.Topic) + len(m.Payload)) }
