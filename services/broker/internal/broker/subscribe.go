package broker

import (
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/topic"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
)

// handleSubscribe takes one SUBSCRIBE: each subscription is checked and added, the SUBACK waits
// until the cluster routes them here and a persistent session has them stored, then the retained
// messages they match follow it.
func (c *client) handleSubscribe(p *mqtt.Subscribe) error {
	var subID uint32
	if c.version == mqtt.V5 && p.Properties.Has(mqtt.PropSubscriptionID) && len(p.Properties.SubscriptionIDs) > 0 {
		subID = p.Properties.SubscriptionIDs[0]
	}
	b := subscribeBatch{codes: make([]mqtt.ReasonCode, len(p.Subscriptions))}
	for i, sub := range p.Subscriptions {
		code, err := c.addSubscription(&b, sub, subID)
		if err != nil {
			return err
		}
		b.codes[i] = code
	}
	c.settleSubscriptions(p, &b)
	c.writePacket(&mqtt.Suback{PacketID: p.PacketID, ReasonCodes: b.codes})
	c.sendRetained(b.wantRetained)
	return nil
}

// subscribeBatch is what the subscriptions of one SUBSCRIBE leave to do.
type subscribeBatch struct {
	codes           []mqtt.ReasonCode // the SUBACK's
	routes, retires []func()          // see Server.subscribe
	wantRetained    []retainedReq
}

// retainedReq is a new subscription that gets the retained messages it matches.
type retainedReq struct {
	filter string
	opts   subOpts
}

// addSubscription checks one subscription and adds it, and returns its SUBACK reason code. The
// error is a protocol violation that ends the connection.
func (c *client) addSubscription(b *subscribeBatch, sub mqtt.Subscription, subID uint32) (mqtt.ReasonCode, error) {
	sub.QoS = c.deviceQoS(sub.QoS)
	_, shared, err := topic.ParseShare(sub.Filter)
	if err == nil {
		err = topic.ValidateFilter(sub.Filter)
	}
	if err != nil {
		return c.failCode(mqtt.TopicFilterInvalid), nil
	}
	if shared && sub.NoLocal && c.version == mqtt.V5 {
		return 0, &mqtt.Error{Code: mqtt.ProtocolError, Msg: "no local on a shared subscription [MQTT-3.8.3-4]"}
	}
	if !c.srv.allowed(c.id, c.username, sub.Filter, auth.Subscribe) {
		return c.failCode(c.srv.cfg.SubackDeniedCode()), nil
	}
	cfg := &c.srv.cfg
	if len(sub.Filter) > cfg.MaxTopicLength || cfg.MaxTopicLevels > 0 && topic.LevelCount(sub.Filter) > cfg.MaxTopicLevels {
		return c.failCode(mqtt.TopicFilterInvalid), nil
	}
	if cfg.MaxSubscriptions > 0 && c.sess.subscriptionCount() >= cfg.MaxSubscriptions && !c.sess.hasSubscription(sub.Filter) {
		return c.failCode(mqtt.QuotaExceeded), nil
	}
	opts := subOpts{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
		RetainHandling: sub.RetainHandling, SubID: subID}
	existed, route, retire := c.srv.subscribe(c.sess, sub.Filter, opts)
	if route != nil {
		b.routes = append(b.routes, route)
	}
	if retire != nil {
		b.retires = append(b.retires, retire)
	}
	// Retained messages go to new non-shared subscriptions per Retain Handling [MQTT-3.3.1-9..11].
	if !shared && (sub.RetainHandling == 0 || (sub.RetainHandling == 1 && !existed)) {
		b.wantRetained = append(b.wantRetained, retainedReq{sub.Filter, opts})
	}
	return mqtt.ReasonCode(sub.QoS), nil
}

// settleSubscriptions waits for the routes of the new subscriptions and stores a persistent
// session's; those the store did not take are removed again and refused.
func (c *client) settleSubscriptions(p *mqtt.Subscribe, b *subscribeBatch) {
	// The SUBACK waits until the other replicas route matching messages here and, for a
	// persistent session, until every replica appends them to its log, so that a message
	// published anywhere after the SUBACK reaches this subscription.
	for _, wait := range b.routes {
		wait()
	}
	if err := c.sess.subscriptionsChanged(); err != nil {
		// A persistent session's new subscriptions that the store did not take are refused,
		// not acknowledged: they would be lost when the session moves.
		c.event(c.srv.log.Warn()).Err(err).Msg("subscriptions of a persistent session not stored; refused")
		for i, sub := range p.Subscriptions {
			if !b.codes[i].IsError() {
				c.srv.unsubscribe(c.sess, sub.Filter)
				b.codes[i] = c.failCode(mqtt.UnspecifiedError)
			}
		}
		b.wantRetained = nil
	}
	for _, retire := range b.retires {
		retire()
	}
}

// sendRetained sends new subscriptions the retained messages they match (after the SUBACK).
func (c *client) sendRetained(reqs []retainedReq) {
	now := time.Now()
	for _, r := range reqs {
		c.srv.retained.Match(r.filter, func(m *message) {
			if m.expired(now) || !c.srv.allowed(c.id, c.username, m.Topic, auth.Read) {
				return
			}
			qos := min(m.QoS, r.opts.QoS)
			if qos > 0 && c.sess.stored.Load() {
				// Through the session's log, like any QoS 1/2 message it gets.
				c.srv.appendRetained(c.sess, m, qos)
				return
			}
			d := delivery{msg: m, qos: qos, retain: true}
			if r.opts.SubID != 0 {
				d.subIDs = []uint32{r.opts.SubID}
			}
			c.sess.deliver(d, now, c)
		})
	}
}

// failCode is a SUBACK failure: the v5 reason code, or 0x80 for 3.x [MQTT-3.9.3-2].
func (c *client) failCode(v5 mqtt.ReasonCode) mqtt.ReasonCode {
	if c.version == mqtt.V5 {
		return v5
	}
	return mqtt.V3SubackFailure
}

func (c *client) handleUnsubscribe(p *mqtt.Unsubscribe) {
	codes := make([]mqtt.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		if c.srv.unsubscribe(c.sess, f) {
			codes[i] = mqtt.Success
		} else {
			codes[i] = mqtt.NoSubscriptionExisted
		}
	}
	if err := c.sess.subscriptionsChanged(); err != nil {
		c.event(c.srv.log.Warn()).Err(err).Msg("unsubscribe of a persistent session not stored; it applies here and is written when Redis is back")
	}
	c.writePacket(&mqtt.Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
}
