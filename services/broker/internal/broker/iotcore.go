package broker

import (
	"fmt"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/iotcore"
)

// The Cloud IoT Core compatible mode's seams (package iotcore has the rules): CONNECT
// (identifyDevice, limitDevice), the ACL (Server.allowed), SUBSCRIBE (deviceQoS), PUBLISH
// (checkDevicePublish, applyDeviceRules) and the commands' acknowledgement (noSubscriber).

// WithIoTCore turns the Cloud IoT Core compatible mode on for m's registry.
func WithIoTCore(m *iotcore.Mode) Option { return func(s *Server) { s.iot = m } }

// deviceOf returns the device a connected client id names, in the compatible mode.
func (s *Server) deviceOf(clientID string) (string, bool) {
	if s.iot == nil {
		return "", false
	}
	return s.iot.DeviceOf(clientID)
}

// deviceAllowed is the ACL of a device: its own topics, whatever the ACL file says.
func deviceAllowed(device, topic string, a auth.Access) bool {
	switch a {
	case auth.Write:
		return iotcore.Allowed(device, topic, iotcore.Publish)
	case auth.Subscribe:
		return iotcore.Allowed(device, topic, iotcore.Subscribe)
	case auth.Read:
		return iotcore.Allowed(device, topic, iotcore.Receive)
	}
	return false
}

// identifyDevice applies the compatible mode to a CONNECT: a client id that claims to name a
// device must name one of the configured registry, or the CONNECT is refused as an identifier
// not accepted (3.x 0x02, v5 0x85). A device's session never outlives its connection (Cloud IoT
// Core kept none: commands reach connected devices only, and the configuration is sent on every
// subscription), its will is not retained and at most QoS 1. It returns false when it refused.
func (c *client) identifyDevice(p *mqtt.Connect) bool {
	if c.srv.iot == nil {
		return true
	}
	device, isDevice, err := c.srv.iot.Identify(c.id)
	if err != nil {
		c.event(c.srv.log.Debug()).Err(err).Msg("connect refused: not a device of this registry")
		c.refuse(c.v3Or(mqtt.V3IdentifierRejected, mqtt.ClientIdentifierNotValid))
		return false
	}
	if !isDevice {
		return true
	}
	if p.WillFlag && p.WillQoS > iotcore.MaxQoS {
		if c.version == mqtt.V5 {
			c.refuse(mqtt.QoSNotSupported) // [MQTT-3.2.2-12]
			return false
		}
		p.WillQoS = iotcore.MaxQoS
	}
	c.device = device
	p.CleanStart = true
	p.WillRetain = false
	return true
}

// limitDevice tells a v5 device, after negotiate, that its session ends with the connection
// and that it may publish at QoS 1 at most [MQTT-3.2.2-9].
func (c *client) limitDevice(p *mqtt.Connect, ack *mqtt.Connack) {
	if c.device == "" {
		return
	}
	c.sessExpiry = 0
	if c.version != mqtt.V5 {
		return
	}
	if p.Properties.SessionExpiry != 0 {
		ack.Properties.SessionExpiry = 0
		ack.Properties.Set(mqtt.PropSessionExpiry)
	}
	ack.Properties.MaximumQoS = iotcore.MaxQoS
	ack.Properties.Set(mqtt.PropMaximumQoS)
}

// deviceQoS is the QoS a device is granted for a subscription: QoS 2 becomes 1, as in Cloud
// IoT Core.
func (c *client) deviceQoS(q byte) byte {
	if c.device != "" && q > iotcore.MaxQoS {
		return iotcore.MaxQoS
	}
	return q
}

// checkDevicePublish refuses a device's QoS 2 PUBLISH: Cloud IoT Core closed the connection; a
// v5 device hears DISCONNECT 0x9B, as the Maximum QoS in its CONNACK announced [MQTT-3.2.2-11].
func (c *client) checkDevicePublish(p *mqtt.Publish) error {
	if c.device != "" && p.QoS > iotcore.MaxQoS {
		return &mqtt.Error{Code: mqtt.QoSNotSupported, Msg: fmt.Sprintf("device %s published at QoS %d", c.device, p.QoS)}
	}
	return nil
}

// applyDeviceRules adjusts an accepted message in the compatible mode: a device's messages are
// never retained (Cloud IoT Core had no retained messages), and a configuration published to
// /devices/{d}/config always is, so that it is kept (in Redis, in a cluster) and sent to the
// device each time it subscribes.
func (c *client) applyDeviceRules(m *message) {
	if c.srv.iot == nil {
		return
	}
	if c.device != "" {
		m.Retain = false
		return
	}
	if iotcore.RetainsConfig(m.Topic) {
		m.Retain = true
	}
}

// noSubscriber reports whether a v5 publisher should hear PUBACK 0x10 No matching subscribers
// for a message that reached nobody: in the compatible mode, for a device's commands, which go
// to connected devices only, so the backend learns that the device did not get it.
func (c *client) noSubscriber(m *message, matched bool) bool {
	return !matched && c.srv.iot != nil && c.version == mqtt.V5 && iotcore.IsCommand(m.Topic)
}
