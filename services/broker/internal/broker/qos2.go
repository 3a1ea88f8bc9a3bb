package broker

import (
	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// The receiving side of QoS 2 [MQTT-4.3.3]: a PUBLISH from the client is routed once, its
// packet id recorded until the PUBREL, and a PUBLISH that reuses the id meanwhile is answered
// PUBREC again and not routed [MQTT-4.3.3-10]. A persistent session's ids are in the store too
// (recorded with the message's appends, see server.publish, and forgotten before the PUBCOMP),
// so that a resend after a crash, to any replica, is recognised.

// qos2Received reports whether packet id is recorded as received, PUBREL not yet.
func (s *session) qos2Received(id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.inQoS2[id]
	return ok
}

// qos2Pending is how many QoS 2 exchanges wait for their PUBREL.
func (s *session) qos2Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inQoS2)
}

// beginQoS2 records packet id (message mid) as received: PUBREC follows.
func (s *session) beginQoS2(id uint16, mid bus.MessageID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inQoS2 == nil {
		s.inQoS2 = make(map[uint16]bus.MessageID)
	}
	s.inQoS2[id] = mid
}

// abortQoS2 forgets packet id: its PUBREC carried an error (the exchange is over
// [MQTT-4.3.3-4]) or was never sent (the connection closes and the client sends the PUBLISH
// again).
func (s *session) abortQoS2(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inQoS2, id)
}

// endQoS2 handles the PUBREL of packet id: the exchange is over and the PUBCOMP goes to c, for a
// persistent session once the store has forgotten the id too (a PUBCOMP for an id still recorded
// there would make the client's next use of the id look like a resend after a crash).
func (s *session) endQoS2(id uint16, c *client) {
	s.mu.Lock()
	_, ok := s.inQoS2[id]
	delete(s.inQoS2, id)
	if ok && s.stored.Load() {
		s.lg().q2del = append(s.lg().q2del, id)
		s.commitLocked(func() { c.sendAck(mqtt.PUBCOMP, id, mqtt.Success) })
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	code := mqtt.Success
	if !ok {
		code = mqtt.PacketIdentifierNotFound
	}
	c.sendAck(mqtt.PUBCOMP, id, code)
}
