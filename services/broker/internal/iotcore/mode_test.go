package iotcore

import (
	"errors"
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/iotcore"
)

func TestIdentify(t *testing.T) {
	m, err := New("proj", "", "reg")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id       string
		device   string
		isDevice bool
		err      error
	}{
		{"backend-1", "", false, nil},
		{"projects/proj/locations/europe-west1/registries/reg/devices/d1", "d1", true, nil},
		{"projects/proj/locations/us-central1/registries/reg/devices/d1", "d1", true, nil},
		{"projects/other/locations/europe-west1/registries/reg/devices/d1", "", true, ErrForeign},
		{"projects/proj/locations/europe-west1/registries/other/devices/d1", "", true, ErrForeign},
		{"projects/proj/locations/europe-west1/registries/reg/devices/", "", true, iotcore.ErrMalformed},
		{"projects/proj", "", true, iotcore.ErrMalformed},
	} {
		d, isDev, err := m.Identify(c.id)
		if d != c.device || isDev != c.isDevice || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("Identify(%q) = %q %v %v, want %q %v %v", c.id, d, isDev, err, c.device, c.isDevice, c.err)
		}
		if dev, ok := m.DeviceOf(c.id); ok != (c.isDevice && c.err == nil) || dev != c.device {
			t.Errorf("DeviceOf(%q) = %q %v", c.id, dev, ok)
		}
	}
	eu, err := New("proj", "europe-west1", "reg")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := eu.Identify("projects/proj/locations/us-central1/registries/reg/devices/d1"); !errors.Is(err, ErrForeign) {
		t.Errorf("region not checked: %v", err)
	}
	for _, bad := range [][3]string{{"", "", "reg"}, {"Proj", "", "reg"}, {"proj", "EU", "reg"}, {"proj", "", "1reg"}, {"proj", "", ""}} {
		if _, err := New(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("New%q accepted", bad)
		}
	}
}

func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		topic string
		op    Operation
		want  bool
	}{
		{"/devices/d1/events", Publish, true},
		{"/devices/d1/events/a", Publish, true},
		{"/devices/d1/state", Publish, true},
		{"/devices/d1/config", Publish, false},
		{"/devices/d1/commands", Publish, false},
		{"/devices/d2/events", Publish, false},
		{"anything", Publish, false},
		{"/devices/d1/config", Subscribe, true},
		{"/devices/d1/commands/#", Subscribe, true},
		{"/devices/d2/config", Subscribe, false},
		{"/devices/+/config", Subscribe, false},
		{"$share/g//devices/d1/config", Subscribe, false},
		{"#", Subscribe, false},
		{"/devices/d1/config", Receive, true},
		{"/devices/d1/commands/x", Receive, true},
		{"/devices/d2/commands/x", Receive, false},
		{"/devices/d1/events", Receive, false},
		{"/devices/d1/events", Operation(9), false},
	} {
		if got := Allowed("d1", c.topic, c.op); got != c.want {
			t.Errorf("Allowed(d1, %q, %v) = %v", c.topic, c.op, got)
		}
	}
	if !RetainsConfig("/devices/d1/config") || RetainsConfig("/devices/d1/state") || RetainsConfig("a/config") {
		t.Error("RetainsConfig")
	}
	if !IsCommand("/devices/d1/commands") || !IsCommand("/devices/d1/commands/a") || IsCommand("/devices/d1/config") {
		t.Error("IsCommand")
	}
}
