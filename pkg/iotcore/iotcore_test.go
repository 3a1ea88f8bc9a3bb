package iotcore

import (
	"errors"
	"strings"
	"testing"
)

func TestParseClientID(t *testing.T) {
	good := "projects/my-proj/locations/europe-west1/registries/reg1/devices/dev-1.a_b~c%d"
	d, err := ParseClientID(good)
	if err != nil {
		t.Fatal(err)
	}
	if d != (Device{"my-proj", "europe-west1", "reg1", "dev-1.a_b~c%d"}) || d.ClientID() != good {
		t.Fatalf("%+v %q", d, d.ClientID())
	}
	if dev, ok := DeviceOf(good); !ok || dev != "dev-1.a_b~c%d" {
		t.Fatalf("DeviceOf = %q %v", dev, ok)
	}
	if _, err := ParseClientID("projects/example.com:p/locations/us-central1/registries/R/devices/D"); err != nil {
		t.Fatalf("domain-scoped project: %v", err)
	}
	for _, bad := range []string{
		"projects/p/locations/r/registries/g/devices/",    // empty device
		"projects/p/locations/r/registries/g/devices/d/x", // text after the device
		"projects/p/locations/r/registries/g/device/d",    // wrong key
		"projects/p/locations/r/registries/g",             // no device
		"projects//locations/r/registries/g/devices/d",    // empty project
		"projects/P/locations/r/registries/g/devices/d",   // upper-case project
		"projects/p/locations/r/registries/1g/devices/d",  // registry starts with a digit
		"projects/p/locations/r/registries/g/devices/a+b", // '+' cannot be in a topic name
		"projects/p/locations/r/registries/g/devices/a#b", // nor '#'
		"projects/p/locations/r/registries/g/devices/a b", // nor a space
		"projects/p/locations/r/registries/g/devices/" + strings.Repeat("a", 256),
		"projects/p/locations/r/registries/g/devices/d/",
		"projects/p/registries/g/locations/r/devices/d", // order
	} {
		if _, err := ParseClientID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", bad, err)
		}
		if _, ok := DeviceOf(bad); ok {
			t.Errorf("DeviceOf(%q) ok", bad)
		}
	}
	if IsDeviceClientID("backend-1") || !IsDeviceClientID("projects/x") {
		t.Error("IsDeviceClientID")
	}
	if _, ok := DeviceOf("backend-1"); ok {
		t.Error("DeviceOf(backend-1) ok")
	}
}

func TestTopicRules(t *testing.T) {
	for _, c := range []struct {
		name   string
		device string
		kind   Kind
	}{
		{"/devices/d1/events", "d1", Events},
		{"/devices/d1/events/a/b", "d1", Events},
		{"/devices/d1/state", "d1", State},
		{"/devices/d1/config", "d1", Config},
		{"/devices/d1/commands", "d1", Commands},
		{"/devices/d1/commands/reboot", "d1", Commands},
		{"/devices/d1/state/x", "", None},
		{"/devices/d1/config/x", "", None},
		{"/devices/d1/other", "", None},
		{"/devices/d1", "", None},
		{"devices/d1/events", "", None},
		{"/devices/1d/events", "", None},
	} {
		d, k := ParseTopic(c.name)
		if d != c.device || k != c.kind {
			t.Errorf("ParseTopic(%q) = %q %v, want %q %v", c.name, d, k, c.device, c.kind)
		}
	}
	pub := map[string]bool{"/devices/d1/events": true, "/devices/d1/events/x": true, "/devices/d1/state": true,
		"/devices/d1/config": false, "/devices/d1/commands": false, "/devices/d2/events": false, "a/b": false}
	for name, want := range pub {
		if CanPublish("d1", name) != want {
			t.Errorf("CanPublish(d1, %q) != %v", name, want)
		}
	}
	sub := map[string]bool{"/devices/d1/config": true, "/devices/d1/commands/#": true,
		"/devices/d1/commands": false, "/devices/d1/commands/x": false, "/devices/d1/#": false,
		"/devices/+/config": false, "/devices/d2/config": false, "#": false, "/devices/d1/events": false}
	for f, want := range sub {
		if CanSubscribe("d1", f) != want {
			t.Errorf("CanSubscribe(d1, %q) != %v", f, want)
		}
	}
	recv := map[string]bool{"/devices/d1/config": true, "/devices/d1/commands": true, "/devices/d1/commands/a/b": true,
		"/devices/d1/events": false, "/devices/d2/config": false}
	for name, want := range recv {
		if CanReceive("d1", name) != want {
			t.Errorf("CanReceive(d1, %q) != %v", name, want)
		}
	}
}

func FuzzParseClientID(f *testing.F) {
	f.Add("projects/p/locations/r/registries/g/devices/d")
	f.Add("projects/p/locations/r/registries/g/devices/d/")
	f.Fuzz(func(t *testing.T, id string) {
		d, err := ParseClientID(id)
		if err != nil {
			return
		}
		if d.ClientID() != id {
			t.Fatalf("%q parsed to %+v, which names %q", id, d, d.ClientID())
		}
		if !strings.Contains(Topic(d.ID, Config), "/"+d.ID+"/") || strings.ContainsAny(d.ID, "/+#") {
			t.Fatalf("device id %q", d.ID)
		}
	})
}
