package wire

import (
	"testing"
	"time"
)

func TestBanCheckAndMatch(t *testing.T) {
	until := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		kind, value, stored string
		id, user, remote    string
		match               bool
	}{
		{BanClientID, "dev-1", "dev-1", "dev-1", "", "10.0.0.1:1", true},
		{BanClientID, "dev-1", "dev-1", "dev-10", "", "", false},
		{BanUsername, "alice", "alice", "x", "alice", "", true},
		{BanUsername, "alice", "alice", "alice", "", "", false},
		{BanAddress, "10.1.2.3", "10.1.2.3/32", "x", "", "10.1.2.3:4444", true},
		{BanAddress, "10.1.2.3/8", "10.0.0.0/8", "x", "", "10.200.1.1:1", true},
		{BanAddress, "10.0.0.0/8", "10.0.0.0/8", "x", "", "11.0.0.1:1", false},
		{BanAddress, "10.0.0.0/8", "10.0.0.0/8", "x", "", "[::ffff:10.9.9.9]:1", true}, // v4-mapped
		{BanAddress, "2001:db8::/32", "2001:db8::/32", "x", "", "[2001:db8::1]:1883", true},
		{BanAddress, "2001:db8::/32", "2001:db8::/32", "x", "", "", false},
		{BanAddress, "10.0.0.0/8", "10.0.0.0/8", "x", "", "10.1.1.1", true}, // a bare address
	} {
		b := Ban{Kind: tc.kind, Value: tc.value, Until: until}
		if err := b.Check(); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if b.Value != tc.stored {
			t.Errorf("%s %q stored as %q, want %q", tc.kind, tc.value, b.Value, tc.stored)
		}
		if got := b.Matches(tc.id, tc.user, tc.remote); got != tc.match {
			t.Errorf("%s %q vs id %q user %q remote %q: %v, want %v", tc.kind, tc.value, tc.id, tc.user, tc.remote, got, tc.match)
		}
	}
	for _, bad := range []Ban{{Kind: "ip", Value: "x"}, {Kind: BanClientID}, {Kind: BanAddress, Value: "10.0.0.0/33"},
		{Kind: BanAddress, Value: "example.com"}, {Kind: BanUsername, Value: string(make([]byte, MaxBanValue+1))}} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
