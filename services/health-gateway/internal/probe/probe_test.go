package probe

import (
	"strings"
	"testing"
)

func TestReachable(t *testing.T) {
	for addr, want := range map[string]string{
		"10.1.2.3:1883":      "",
		"broker-0.mqtt:1883": "",
		"[fd00::1]:1883":     "",
		":1883":              "BROKER_ADVERTISE_ADDR",
		"0.0.0.0:1883":       "BROKER_ADVERTISE_ADDR",
		"[::]:1883":          "BROKER_ADVERTISE_ADDR",
		"1883":               "missing port",
	} {
		err := reachable(addr)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", addr, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: got %v, want an error mentioning %s", addr, err, want)
		}
	}
}

func TestProbeThroughAnUnreachableReplicaSaysWhy(t *testing.T) {
	p := New(Options{GatewayID: "gw"})
	defer p.Close()
	p.Ensure("r1", ":1883")
	r := p.Probe(t.Context(), "r1", "r1", 0)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "not connected to r1 at :1883") ||
		!strings.Contains(r.Err.Error(), "BROKER_ADVERTISE_ADDR") {
		t.Fatalf("probe error %v", r.Err)
	}
	if ok, why := p.ConnState("r1"); ok || why == "" {
		t.Fatalf("ConnState = %v, %q", ok, why)
	}
}
