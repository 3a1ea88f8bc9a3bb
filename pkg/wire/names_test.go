package wire

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	n := NewNames("")
	for got, want := range map[string]string{
		n.Inbound("r1"):             "mcloudtt:{r1}:in",
		n.Control("r1"):             "mcloudtt:{r1}:ctl",
		n.Routes("r1"):              "mcloudtt:{r1}:routes",
		n.RouteChanges():            "mcloudtt:routes",
		n.Replicas():                "mcloudtt:replicas",
		n.Heartbeats():              "mcloudtt:heartbeat",
		n.Retained():                "mcloudtt:retained",
		n.Session("c/1"):            "mcloudtt:{s:c/1}:session",
		n.SessionQueue("c/1"):       "mcloudtt:{s:c/1}:queue",
		n.SessionOwner("c/1"):       "mcloudtt:{s:c/1}:owner",
		n.DeviceKeys("dev-1"):       "mcloudtt:{d:dev-1}:keys",
		n.Export():                  "mcloudtt:export",
		n.ExportDeadLetter():        "mcloudtt:export:dead",
		n.ExportPlans():             "mcloudtt:export:plans",
		n.Bans():                    "mcloudtt:{bans}",
		n.BanExpiry():               "mcloudtt:{bans}:until",
		NewNames("t7").Inbound("x"): "t7:{x}:in",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if n.Prefix() != DefaultPrefix {
		t.Errorf("Prefix() = %q", n.Prefix())
	}
}

func TestValidateReplicaID(t *testing.T) {
	for _, ok := range []string{"r1", "broker-7c9f8d-x2x4z", "a.b_c-D", strings.Repeat("a", MaxReplicaIDLength)} {
		if err := ValidateReplicaID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a{b", "a}b", "a:b", "a b", "ü", strings.Repeat("a", MaxReplicaIDLength+1)} {
		if err := ValidateReplicaID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, bad := range []string{"a{", "}", "a b", "x\x00", strings.Repeat("p", 65)} {
		if err := ValidatePrefix(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}
