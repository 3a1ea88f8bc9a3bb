package broker

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// pendingAck is a PUBACK or PUBREC waiting for the message to be safe: one count for the
// publishing goroutine, one per replica the message was forwarded to, and one for its appends to
// the persistent sessions it matched. When the count reaches zero it may go out, after every
// earlier acknowledgement of the same client [MQTT-4.6.0-2], [MQTT-4.6.0-3].
type pendingAck struct {
	c      *client
	t      mqtt.Type
	id     uint16
	code   mqtt.ReasonCode
	n      atomic.Int32
	failed atomic.Bool
	// durable: the message goes to persistent sessions (or is a persistent publisher's QoS 2
	// message), so a failure may not be acknowledged as a success.
	durable bool
}

func (a *pendingAck) add() { a.n.Add(1) }

// done releases one count; err is the bus's verdict for one destination. A replica that no
// longer listens (bus.ErrNoReceiver: it went away) had nobody to deliver to and is no failure.
func (a *pendingAck) done(err error) {
	if err != nil && !errors.Is(err, bus.ErrNoReceiver) {
		a.failed.Store(true)
		if a.durable && (a.c.version != mqtt.V5 || errors.Is(err, bus.ErrUncertain)) {
			// A 3.x publisher cannot be told, and nobody can tell a v5 one whether a write that
			// got no answer from Redis was applied: the connection closes without this
			// acknowledgement (flushAcks), and nothing it sent after this message is stored, so
			// that the client sends them again, in order, with their packet ids (a QoS 2 one
			// found already recorded is not delivered again).
			a.c.storeFailed.Store(true)
		}
	}
	if a.n.Add(-1) == 0 {
		a.c.flushAcks()
	}
}

// pendAck makes the acknowledgement of p, held by one count (the reader's) until settleAck.
func (c *client) pendAck(p *mqtt.Publish) *pendingAck {
	c.ackMu.Lock()
	var a *pendingAck
	if n := len(c.ackFree); n > 0 {
		a, c.ackFree = c.ackFree[n-1], c.ackFree[:n-1]
	} else {
		a = &pendingAck{c: c} // c is never written again: a late done may still read it
	}
	c.ackMu.Unlock()
	a.t, a.id, a.code, a.durable = mqtt.PUBACK, p.PacketID, mqtt.Success, false
	if p.QoS == mqtt.QoS2 {
		a.t = mqtt.PUBREC
	}
	a.failed.Store(false)
	a.n.Store(1)
	return a
}

// settleAck puts a, whose message the reader has published, in line and releases the reader's
// count. When nothing else holds it (the message went nowhere that answers later, or those
// places already answered) and nothing waits before it, it goes out at once.
func (c *client) settleAck(a *pendingAck) {
	c.ackMu.Lock()
	if len(c.acks) == 0 && a.n.Load() == 1 && !a.failed.Load() {
		c.sendAck(a.t, a.id, a.code)
		c.ackFree = append(c.ackFree, a)
		c.ackMu.Unlock()
		return
	}
	c.acks = append(c.acks, a)
	c.ackMu.Unlock()
	a.done(nil)
}

// ack sends an acknowledgement now, or behind those still waiting for the bus.
func (c *client) ack(t mqtt.Type, id uint16, code mqtt.ReasonCode) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	if len(c.acks) == 0 {
		c.sendAck(t, id, code)
		return
	}
	c.acks = append(c.acks, &pendingAck{c: c, t: t, id: id, code: code})
}

// flushAcks sends the acknowledgements at the head of the queue that are ready. A message not
// stored for a persistent session, or not taken by Redis for another replica, is acknowledged
// with 0x80 (Unspecified error) to a v5 client, which may send it again. 3.x has no way to say
// so: when persistent sessions were to get the message, the connection is closed without the
// acknowledgement (the client sends it again when it reconnects); a message for other replicas'
// clean sessions only is acknowledged and the loss counted (cluster_unavailable).
func (c *client) flushAcks() {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	n := 0
	for n < len(c.acks) && c.acks[n].n.Load() <= 0 {
		a := c.acks[n]
		code := a.code
		if a.failed.Load() && code == mqtt.Success {
			c.srv.stats.drop(dropClusterUnavailable)
			if a.t == mqtt.PUBREC && (c.version == mqtt.V5 || a.durable) {
				// A failed PUBREC ends the QoS 2 exchange [MQTT-4.3.3-4], and a 3.x resend
				// must be routed again: the id is free.
				c.sess.abortQoS2(a.id)
			}
			if c.storeFailed.Load() {
				c.event(c.srv.log.Warn()).Uint16("packet_id", a.id).Msg("message not stored for its persistent sessions (or not known to be); closing the connection without acknowledging it")
				c.setReason(discClusterUnavailable)
				for i := n; i < len(c.acks); i++ {
					c.acks[i] = nil
				}
				c.acks = c.acks[:0]
				// The acknowledgements before this one go out first (off this goroutine: it
				// may be the store's).
				go func() {
					c.out.closeAndDrain(time.Second)
					c.closeConn()
				}()
				return
			}
			if c.version == mqtt.V5 {
				code = mqtt.UnspecifiedError
			}
		}
		c.sendAck(a.t, a.id, code)
		c.acks[n] = nil
		c.ackFree = append(c.ackFree, a) // every done call has returned its count
		n++
	}
	if n > 0 {
		c.acks = append(c.acks[:0], c.acks[n:]...)
	}
}
