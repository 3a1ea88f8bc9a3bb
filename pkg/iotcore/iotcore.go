// Package iotcore knows the names Google Cloud IoT Core gave its devices: the client identifier
// that names a device (projects/{project}/locations/{region}/registries/{registry}/devices/{device})
// and the device's four topic families (/devices/{device}/events[/subfolder], /state, /config,
// /commands[/subfolder]). It is pure: the broker's compatible mode builds its rules on it, and the
// BigQuery adapter derives a message's device id from its publisher's client id with it.
package iotcore

import (
	"errors"
	"fmt"
	"strings"
)

// Device is the identity a device's client id states.
type Device struct {
	Project, Region, Registry, ID string
}

// ClientID is the client id that names d.
func (d Device) ClientID() string {
	return "projects/" + d.Project + "/locations/" + d.Region + "/registries/" + d.Registry + "/devices/" + d.ID
}

// Prefix starts every client id that claims to name a device. A client id with it either parses
// (ParseClientID) or is malformed; one without it is not a device's.
const Prefix = "projects/"

// IsDeviceClientID reports whether id claims to name a device (it may still be malformed).
func IsDeviceClientID(id string) bool { return strings.HasPrefix(id, Prefix) }

// ErrMalformed is wrapped by ParseClientID for a client id that is not a device path.
var ErrMalformed = errors.New("iotcore: malformed device client id")

// maxIDLen bounds each id in a device path, as Cloud IoT Core did for device ids.
const maxIDLen = 255

// ParseClientID reads a device client id. Every id in it must be 1 to 255 characters: the
// project of lower-case letters, digits, '-', '.' and ':' (domain-scoped projects); the region
// of lower-case letters, digits and '-'; the registry and the device a letter followed by
// letters, digits and "-._~%". Cloud IoT Core also allowed '+' in device ids; a topic name
// cannot carry it [MQTT-4.7.1-1], so no such device could use its topics here and it is refused.
func ParseClientID(id string) (Device, error) {
	var d Device
	rest := id
	for _, f := range []struct {
		key   string
		dst   *string
		valid func(string) bool
	}{
		{"projects", &d.Project, validProject},
		{"locations", &d.Region, validRegion},
		{"registries", &d.Registry, ValidName},
		{"devices", &d.ID, ValidName},
	} {
		key, after, ok := strings.Cut(rest, "/")
		if !ok || key != f.key {
			return Device{}, fmt.Errorf("%w: %q: want %s/{id} at %q", ErrMalformed, id, f.key, rest)
		}
		val, next, more := strings.Cut(after, "/")
		if !f.valid(val) {
			return Device{}, fmt.Errorf("%w: %q: %s id %q is not valid", ErrMalformed, id, f.key, val)
		}
		*f.dst = val
		if f.key == "devices" && more {
			return Device{}, fmt.Errorf("%w: %q: text after the device id", ErrMalformed, id)
		}
		rest = next
	}
	return d, nil
}

// DeviceOf returns the device id a client id names, and whether it names one: a well-formed
// device path of any project, region and registry. It suits a hook of type
// func(clientID string) (device string, ok bool).
func DeviceOf(clientID string) (string, bool) {
	if !IsDeviceClientID(clientID) {
		return "", false
	}
	d, err := ParseClientID(clientID)
	if err != nil {
		return "", false
	}
	return d.ID, true
}

// ValidName reports whether s may be a registry or device id: 1 to 255 characters, a letter
// first, then letters, digits and "-._~%".
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !isDigit(c) && !strings.ContainsRune("-._~%", rune(c)) {
			return false
		}
	}
	return true
}

func validProject(s string) bool {
	return validChars(s, func(c byte) bool { return isLower(c) || isDigit(c) || c == '-' || c == '.' || c == ':' })
}

func validRegion(s string) bool {
	return validChars(s, func(c byte) bool { return isLower(c) || isDigit(c) || c == '-' })
}

// ValidProject and ValidRegion check a configured project or region as ParseClientID does.
func ValidProject(s string) bool { return validProject(s) }

// ValidRegion: see ValidProject.
func ValidRegion(s string) bool { return validRegion(s) }

func validChars(s string, ok func(byte) bool) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isLower(c byte) bool  { return c >= 'a' && c <= 'z' }
func isLetter(c byte) bool { return isLower(c) || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
