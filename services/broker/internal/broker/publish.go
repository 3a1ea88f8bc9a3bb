package broker

import (
	"fmt"
	"strings"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// handlePublish takes one PUBLISH: its topic is resolved (topic alias), it is admitted, refused
// or acknowledged and dropped, and an admitted message is routed and acknowledged.
func (c *client) handlePublish(p *mqtt.Publish) error {
	c.srv.stats.msgsRecv[p.QoS].Add(1)
	if c.storeFailed.Load() {
		c.srv.stats.drop(dropClusterUnavailable)
		c.closeConn()
		return errClientGone
	}
	if err := c.checkDevicePublish(p); err != nil {
		return err
	}
	name, err := c.resolveTopic(p)
	if err != nil {
		return err
	}
	if admitted, err := c.admitPublish(p, name); !admitted {
		return err
	}
	c.acceptPublish(p, name)
	return nil
}

// resolveTopic returns the PUBLISH's topic name: its own, or the one its v5 topic alias stands
// for; a PUBLISH with both a topic and an alias sets the alias.
func (c *client) resolveTopic(p *mqtt.Publish) (string, error) {
	name := p.Topic
	if c.version == mqtt.V5 && p.Properties.Has(mqtt.PropTopicAlias) {
		a := p.Properties.TopicAlias
		if a == 0 || a > c.srv.cfg.TopicAliasMaximum {
			return "", &mqtt.Error{Code: mqtt.TopicAliasInvalid, Msg: fmt.Sprintf("topic alias %d outside 1..%d [MQTT-3.3.2-9]", a, c.srv.cfg.TopicAliasMaximum)}
		}
		if name != "" {
			if c.aliasesIn == nil {
				c.aliasesIn = make(map[uint16]string)
			}
			c.aliasesIn[a] = name
		} else if name = c.aliasesIn[a]; name == "" {
			return "", &mqtt.Error{Code: mqtt.ProtocolError, Msg: fmt.Sprintf("unknown topic alias %d", a)}
		}
	}
	if err := topic.ValidateName(name); err != nil {
		return "", &mqtt.Error{Code: mqtt.TopicNameInvalid, Msg: err.Error()}
	}
	return name, nil
}

// admitPublish decides whether a PUBLISH on topic name is routed. It returns false when the
// PUBLISH has been answered already (a QoS 2 resend, a refusal, a message acknowledged and
// dropped), with an error when it breaks the protocol or a limit that ends the connection.
func (c *client) admitPublish(p *mqtt.Publish, name string) (bool, error) {
	if p.QoS == mqtt.QoS2 && c.sess.qos2Received(p.PacketID) {
		// Already received and routed: acknowledge again, deliver once [MQTT-4.3.3-10].
		c.ack(mqtt.PUBREC, p.PacketID, mqtt.Success)
		return false, nil
	}
	if within, err := c.withinLimits(p, name); !within {
		return false, err
	}
	return c.permitted(p, name), nil
}

// withinLimits checks a PUBLISH against the broker's limits: topic length and levels, publish
// rate (a 3.x publisher is held back instead) and unacknowledged QoS 2 publishes. It returns
// false when the PUBLISH is refused.
func (c *client) withinLimits(p *mqtt.Publish, name string) (bool, error) {
	cfg := &c.srv.cfg
	if len(name) > cfg.MaxTopicLength || cfg.MaxTopicLevels > 0 && topic.LevelCount(name) > cfg.MaxTopicLevels {
		if c.version != mqtt.V5 {
			return false, &mqtt.Error{Code: mqtt.TopicNameInvalid, Msg: "topic beyond the broker's length or level limit"}
		}
		return false, c.rejectPublish(p, mqtt.TopicNameInvalid, dropTopicTooLong)
	}
	if c.rate != nil {
		if wait := c.rate.take(time.Now(), c.version != mqtt.V5); wait > 0 {
			if c.version == mqtt.V5 {
				// 0x96 is a DISCONNECT reason only; PUBACK cannot carry it.
				c.srv.stats.drop(dropRateLimited)
				return false, &mqtt.Error{Code: mqtt.MessageRateTooHigh, Msg: fmt.Sprintf("more than %g publishes per second", c.srv.cfg.MaxPublishRate)}
			}
			// 3.x cannot be told: hold the publisher back instead (TCP backpressure, no loss).
			c.flushKicks()
			time.Sleep(wait)
		}
	}
	if p.QoS == mqtt.QoS2 && c.sess.qos2Pending() >= int(c.srv.cfg.ReceiveMaximum) {
		return false, &mqtt.Error{Code: mqtt.ReceiveMaximumExceeded, Msg: "more unacknowledged QoS 2 publishes than Receive Maximum [MQTT-3.3.4-9]"}
	}
	return true, nil
}

// permitted asks the ACL, and keeps clients out of the broker's $-topics. It returns false when
// the PUBLISH was answered instead (refused, or acknowledged and dropped).
func (c *client) permitted(p *mqtt.Publish, name string) bool {
	if !c.srv.allowed(c.id, c.username, name, auth.Write) {
		// Refused by the ACL: v5 hears why [MQTT-3.3.5-2], and a refused QoS 2 exchange ends
		// with its PUBREC, so its packet id is not recorded [MQTT-4.3.3-4]; 3.x gets its usual
		// acknowledgement and the message is dropped, as in mosquitto (its PUBREL then finds
		// the id).
		if c.version == mqtt.V5 {
			_ = c.rejectPublish(p, mqtt.NotAuthorized, dropNotAuthorized)
			return false
		}
		c.ackDropped(p)
		return false
	}
	if topic.IsSystem(name) && !strings.HasPrefix(name, bus.ProbeTopicPrefix) {
		// $-topics belong to the broker; clients may not publish into them. The message is
		// acknowledged and dropped, as mosquitto does. The health gateway's probe topics are
		// the exception: under '$' so that "#" subscribers never see them.
		c.ackDropped(p)
		return false
	}
	return true
}

// ackDropped acknowledges a PUBLISH as if it were accepted and drops its message, counted as not
// authorized. A QoS 2 exchange goes on to its PUBREL.
func (c *client) ackDropped(p *mqtt.Publish) {
	c.srv.stats.drop(dropNotAuthorized)
	switch p.QoS {
	case mqtt.QoS1:
		c.ack(mqtt.PUBACK, p.PacketID, mqtt.Success)
	case mqtt.QoS2:
		c.sess.beginQoS2(p.PacketID, bus.MessageID{})
		c.ack(mqtt.PUBREC, p.PacketID, mqtt.Success)
	}
}

// acceptPublish routes an admitted message published on topic name and acknowledges it.
func (c *client) acceptPublish(p *mqtt.Publish, name string) {
	m := newMessage(p, name, c.id, c.username, time.Now())
	c.applyDeviceRules(m)
	if p.QoS == mqtt.QoS0 {
		c.srv.publish(m, c, nil)
		return
	}
	if p.QoS == mqtt.QoS2 {
		c.sess.beginQoS2(p.PacketID, m.ID)
	}
	// The acknowledgement waits until the message is stored for every persistent session it
	// matches and Redis has it for every other replica it goes to; acknowledgements still leave
	// in PUBLISH order [MQTT-4.6.0-2].
	pa := c.pendAck(p)
	if matched := c.srv.publish(m, c, pa); c.noSubscriber(m, matched) {
		pa.code = mqtt.NoMatchingSubscribers // read once the reader's count is released (settleAck)
	}
	c.settleAck(pa)
}

// rejectPublish refuses a v5 PUBLISH with a reason code in its acknowledgement (nothing for QoS 0)
// and counts the drop. A refused QoS 2 message is finished: no PUBREL follows [MQTT-4.3.3-4].
func (c *client) rejectPublish(p *mqtt.Publish, code mqtt.ReasonCode, cause dropCause) error {
	c.srv.stats.drop(cause)
	switch p.QoS {
	case mqtt.QoS1:
		c.ack(mqtt.PUBACK, p.PacketID, code)
	case mqtt.QoS2:
		c.ack(mqtt.PUBREC, p.PacketID, code)
	}
	return nil
}

func (c *client) handlePubrel(id uint16) { c.sess.endQoS2(id, c) }

// applyAliasLocked replaces the topic with a topic alias the client accepts [MQTT-3.3.2-12]: the
// first message on a topic carries the topic and a new alias, later ones the alias alone.
func (c *client) applyAliasLocked(p *mqtt.Publish) {
	if a, ok := c.aliasesOut[p.Topic]; ok {
		p.Topic = ""
		p.Properties.TopicAlias = a
		p.Properties.Set(mqtt.PropTopicAlias)
		return
	}
	if len(c.aliasesOut) >= int(c.aliasMax) {
		return
	}
	if c.aliasesOut == nil {
		c.aliasesOut = make(map[string]uint16)
	}
	a := uint16(len(c.aliasesOut) + 1)
	c.aliasesOut[p.Topic] = a
	p.Properties.TopicAlias = a
	p.Properties.Set(mqtt.PropTopicAlias)
}
