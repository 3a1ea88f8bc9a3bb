package iotcore

import "strings"

// Kind is one of a device's topic families.
type Kind int

// The topic families. Events and State are the device's to publish, Config and Commands its to
// receive.
const (
	None     Kind = iota // not a device topic
	Events               // /devices/{d}/events and /devices/{d}/events/{subfolder...}
	State                // /devices/{d}/state
	Config               // /devices/{d}/config
	Commands             // /devices/{d}/commands and /devices/{d}/commands/{subfolder...}
)

func (k Kind) String() string {
	switch k {
	case Events:
		return "events"
	case State:
		return "state"
	case Config:
		return "config"
	case Commands:
		return "commands"
	}
	return "none"
}

// Topic returns the topic of device's family k without a subfolder: /devices/{device}/{k}.
func Topic(device string, k Kind) string { return "/devices/" + device + "/" + k.String() }

// CommandsFilter is the one filter a device subscribes to for its commands: Cloud IoT Core did
// not support subscribing to a single subfolder.
func CommandsFilter(device string) string { return Topic(device, Commands) + "/#" }

// ParseTopic splits a topic name into its device and family: None for a name outside the four
// families (another level after state or config, an empty subfolder level is still a subfolder).
func ParseTopic(name string) (device string, k Kind) {
	rest, ok := strings.CutPrefix(name, "/devices/")
	if !ok {
		return "", None
	}
	device, rest, ok = strings.Cut(rest, "/")
	if !ok || !ValidName(device) {
		return "", None
	}
	family, _, hasSub := strings.Cut(rest, "/")
	switch family {
	case "events":
		k = Events
	case "commands":
		k = Commands
	case "state":
		k = State
	case "config":
		k = Config
	default:
		return "", None
	}
	if hasSub && (k == State || k == Config) {
		return "", None
	}
	return device, k
}

// CanPublish reports whether device may publish to the topic name: its own events (with or
// without a subfolder) and its own state.
func CanPublish(device, name string) bool {
	d, k := ParseTopic(name)
	return d == device && (k == Events || k == State)
}

// CanSubscribe reports whether device may subscribe to filter: exactly its config topic or its
// commands filter (/devices/{device}/commands/#).
func CanSubscribe(device, filter string) bool {
	return filter == Topic(device, Config) || filter == CommandsFilter(device)
}

// CanReceive reports whether device may be sent a message on the topic name: its config and its
// commands (with or without a subfolder).
func CanReceive(device, name string) bool {
	d, k := ParseTopic(name)
	return d == device && (k == Config || k == Commands)
}
