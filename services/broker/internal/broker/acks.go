package broker

import (
	"errors"
	"sync/atomic"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// pendingAck is a PUBACK or PUBREC waiting for the bus: one count for the publishing goroutine
// plus one per replica the message was forwarded to. When the count reaches zero it may go out,
// after every earlier acknowledgement of the same client [MQTT-4.6.0-2], [MQTT-4.6.0-3].
type pendingAck struct {
	c      *client
	t      mqtt.Type
	id     uint16
	code   mqtt.ReasonCode
	n      atomic.Int32
	failed atomic.Bool
}

func (a *pendingAck) add() { a.n.Add(1) }

// done releases one count; err is the bus's verdict for one destination. A replica that no
// longer listens (bus.ErrNoReceiver: it went away) had nobody to deliver to and is no failure.
func (a *pendingAck) done(err error) {
	if err != nil && !errors.Is(err, bus.ErrNoReceiver) {
		a.failed.Store(true)
	}
	if a.n.Add(-1) == 0 {
		a.c.flushAcks()
	}
}

// pendAck queues the acknowledgement of p, held by one count until the publish path is through.
func (c *client) pendAck(p *mqtt.Publish) *pendingAck {
	a := &pendingAck{c: c, t: mqtt.PUBACK, id: p.PacketID}
	if p.QoS == mqtt.QoS2 {
		a.t = mqtt.PUBREC
	}
	a.n.Store(1)
	c.ackMu.Lock()
	c.acks = append(c.acks, a)
	c.ackMu.Unlock()
	return a
}

// ack sends an acknowledgement now, or behind those still waiting for the bus.
func (c *client) ack(t mqtt.Type, id uint16, code mqtt.ReasonCode) {
	if c.srv.cluster == nil {
		c.sendAck(t, id, code)
		return
	}
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if len(c.acks) == 0 {
		c.sendAck(t, id, code)
		return
	}
	c.acks = append(c.acks, &pendingAck{c: c, t: t, id: id, code: code})
}

// flushAcks sends the acknowledgements at the head of the queue that are ready. A message Redis
// did not take for another replica is acknowledged with 0x80 (Unspecified error) to a v5
// client, which may send it again; 3.x has no way to say so, so the acknowledgement is sent and
// the loss counted (cluster_unavailable).
func (c *client) flushAcks() {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	n := 0
	for n < len(c.acks) && c.acks[n].n.Load() <= 0 {
		a := c.acks[n]
		code := a.code
		if a.failed.Load() {
			c.srv.stats.drop(dropClusterUnavailable)
			if c.version == mqtt.V5 && code == mqtt.Success {
				code = mqtt.UnspecifiedError
				if a.t == mqtt.PUBREC {
					// A failed PUBREC ends the QoS 2 exchange [MQTT-4.3.3-4]: a resend is new.
					c.sess.mu.Lock()
					delete(c.sess.inQoS2, a.id)
					c.sess.mu.Unlock()
				}
			}
		}
		c.sendAck(a.t, a.id, code)
		c.acks[n] = nil
		n++
	}
	if n > 0 {
		c.acks = append(c.acks[:0], c.acks[n:]...)
	}
}
