// Package iotcore is the broker's Cloud IoT Core compatible mode (BROKER_IOTCORE): a client id of
// the form projects/{project}/locations/{region}/registries/{registry}/devices/{device} names a
// device of the configured registry, and the device may use its own topics only, as Cloud IoT
// Core allowed: publish to /devices/{device}/events[/subfolder] and /devices/{device}/state,
// subscribe to /devices/{device}/config and /devices/{device}/commands/#. Every other client id
// is a backend's, under the password file and ACL like any client. The names themselves are
// pkg/iotcore's; this package holds the configured registry and the rules the broker applies.
package iotcore

import (
	"errors"
	"fmt"

	"github.com/mcloudtt/mcloudtt/pkg/iotcore"
)

// MaxQoS is the highest QoS a device may use: Cloud IoT Core did not support QoS 2. A device's
// QoS 2 PUBLISH ends its connection (v5: DISCONNECT 0x9B), a QoS 2 subscription is granted QoS 1.
const MaxQoS = 1

// ErrForeign is wrapped by Identify for a device of another project, region or registry.
var ErrForeign = errors.New("iotcore: device of another registry")

// Mode is the configured registry: devices of it connect, others are refused.
type Mode struct {
	project, region, registry string
}

// New returns the mode for devices of project's registry; region, when not empty, must match
// too (empty: any region).
func New(project, region, registry string) (*Mode, error) {
	switch {
	case !iotcore.ValidProject(project):
		return nil, fmt.Errorf("iotcore: project %q is not a valid project id", project)
	case region != "" && !iotcore.ValidRegion(region):
		return nil, fmt.Errorf("iotcore: region %q is not a valid region", region)
	case !iotcore.ValidName(registry):
		return nil, fmt.Errorf("iotcore: registry %q is not a valid registry id", registry)
	}
	return &Mode{project: project, region: region, registry: registry}, nil
}

// Identify tells what a client id is: not a device's (isDevice false: a backend), the device
// device of the configured registry, or an error for a malformed device path
// (iotcore.ErrMalformed) or a device of another registry (ErrForeign). Both errors refuse the
// CONNECT as an identifier the broker does not accept.
func (m *Mode) Identify(clientID string) (device string, isDevice bool, err error) {
	if !iotcore.IsDeviceClientID(clientID) {
		return "", false, nil
	}
	d, err := iotcore.ParseClientID(clientID)
	if err != nil {
		return "", true, err
	}
	if d.Project != m.project || d.Registry != m.registry || m.region != "" && d.Region != m.region {
		return "", true, fmt.Errorf("%w: %q, this broker serves projects/%s/locations/%s/registries/%s",
			ErrForeign, clientID, m.project, m.regionOrAny(), m.registry)
	}
	return d.ID, true, nil
}

func (m *Mode) regionOrAny() string {
	if m.region == "" {
		return "*"
	}
	return m.region
}

// DeviceOf returns the device a client id names when it is a device of the configured registry.
// It is the hook an authenticator uses to find the device whose credentials to check.
func (m *Mode) DeviceOf(clientID string) (device string, ok bool) {
	d, isDevice, err := m.Identify(clientID)
	return d, isDevice && err == nil
}

// Operation is what a device asks to do with a topic.
type Operation int

// The operations the ACL decides.
const (
	Publish   Operation = iota // a PUBLISH (or will) to a topic name
	Subscribe                  // a SUBSCRIBE to a filter
	Receive                    // a message on a topic name sent to the device
)

// Allowed decides an operation of device on a topic name or filter: publish to its events and
// state, subscribe to exactly its config topic and its commands filter, receive its config and
// commands. Nothing else, wildcards and shared subscriptions included.
func Allowed(device, topic string, op Operation) bool {
	switch op {
	case Publish:
		return iotcore.CanPublish(device, topic)
	case Subscribe:
		return iotcore.CanSubscribe(device, topic)
	case Receive:
		return iotcore.CanReceive(device, topic)
	}
	return false
}

// RetainsConfig reports whether a message on the topic name is a device's configuration, kept
// as the topic's retained message (in Redis in a cluster) and sent to the device whenever it
// subscribes to it: a backend's publish to /devices/{d}/config is retained whatever its flag.
func RetainsConfig(topic string) bool {
	_, k := iotcore.ParseTopic(topic)
	return k == iotcore.Config
}

// IsCommand reports whether the topic name is a device's commands topic: a message there goes
// to a connected subscriber or nowhere (a v5 publisher hears PUBACK 0x10 when nobody had it).
func IsCommand(topic string) bool {
	_, k := iotcore.ParseTopic(topic)
	return k == iotcore.Commands
}
