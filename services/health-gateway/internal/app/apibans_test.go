package app

import (
	"context"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/api"
)

// refusedEverywhere checks that id is refused at CONNECT on every replica: v5 with 0x8A, 3.1.1
// with 5.
func refusedEverywhere(t *testing.T, addrs map[string]string, id string) {
	t.Helper()
	for r, a := range addrs {
		if _, code := connectV5(t, a, id); code != 0x8A {
			t.Fatalf("banned %s on %s: v5 CONNACK 0x%02X, want 0x8A", id, r, code)
		}
		if _, code := connectV3(t, a, id, nil); code != 5 {
			t.Fatalf("banned %s on %s: 3.1.1 CONNACK %d, want 5", id, r, code)
		}
	}
}

// Bans: a banned client id is kicked where it is connected and refused on every replica, is
// accepted again once the ban is lifted, and once a short ban ends by itself; bans are listed;
// an address prefix bans the loopback clients.
func TestManagementAPIBans(t *testing.T) {
	t.Parallel()
	c, addrs := startAPICluster(t)
	vb, _ := connectV5(t, addrs["broker-b"], "dev-b")

	var ban api.BanAnswer
	c.callJSON("POST", "/api/v1/bans", adminToken, api.BanRequest{Kind: "client_id", Value: "dev-b",
		DurationSeconds: 3600, Reason: "test"}, 201, &ban)
	if len(ban.Kicked) != 1 || ban.Kicked[0].Replica != "broker-b" || ban.Ban.By != "admin" || len(ban.Unreachable) != 0 {
		t.Fatalf("ban: %+v", ban)
	}
	select {
	case d := <-vb.disc:
		if d.ReasonCode != 0x98 {
			t.Fatalf("banned client got DISCONNECT 0x%02X", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the banned client was not kicked")
	}
	refusedEverywhere(t, addrs, "dev-b")
	var bans api.BansAnswer
	c.callJSON("GET", "/api/v1/bans", readToken, nil, 200, &bans)
	if len(bans.Bans) != 1 || bans.Bans[0].Key() != "client_id:dev-b" || bans.Bans[0].Reason != "test" {
		t.Fatalf("bans: %+v", bans)
	}
	c.callJSON("DELETE", "/api/v1/bans/client_id/dev-b", adminToken, nil, 200, nil)
	c.callJSON("DELETE", "/api/v1/bans/client_id/dev-b", adminToken, nil, 404, nil)
	for r, a := range addrs {
		if _, code := connectV5(t, a, "dev-b"); code != 0 {
			t.Fatalf("dev-b refused on %s after the ban was lifted: 0x%02X", r, code)
		}
	}

	// A ban of two seconds ends by itself, on every replica and in Redis.
	c.callJSON("POST", "/api/v1/bans", adminToken, api.BanRequest{Kind: "client_id", Value: "dev-x",
		DurationSeconds: 2}, 201, nil)
	refusedEverywhere(t, addrs, "dev-x")
	time.Sleep(2100 * time.Millisecond) // the ban was made before refusedEverywhere began
	for r, a := range addrs {
		if _, code := connectV5(t, a, "dev-x"); code != 0 {
			t.Fatalf("dev-x refused on %s after its ban ended: 0x%02X", r, code)
		}
	}
	c.callJSON("GET", "/api/v1/bans", readToken, nil, 200, &bans)
	if len(bans.Bans) != 0 {
		t.Fatalf("an ended ban is still listed: %+v", bans)
	}

	// An address prefix: every client from 127.0.0.0/8 (all of them here) is refused.
	c.callJSON("POST", "/api/v1/bans", adminToken, api.BanRequest{Kind: "address", Value: "127.1.2.3/8",
		DurationSeconds: 60}, 201, &ban)
	if ban.Ban.Value != "127.0.0.0/8" {
		t.Fatalf("prefix stored as %q", ban.Ban.Value)
	}
	if _, code := connectV5(t, addrs["broker-c"], "dev-y"); code != 0x8A {
		t.Fatalf("client from a banned prefix: 0x%02X", code)
	}
	c.callJSON("DELETE", "/api/v1/bans/address/127.0.0.0/8", adminToken, nil, 200, nil)
	for _, bad := range []api.BanRequest{{Kind: "ip", Value: "x", DurationSeconds: 1},
		{Kind: "address", Value: "not-an-ip", DurationSeconds: 1}, {Kind: "client_id", Value: "x"}} {
		c.callJSON("POST", "/api/v1/bans", adminToken, bad, 400, nil)
	}
	waitLog(t, c, `"action":"ban"`, 3)
	waitLog(t, c, `"action":"unban"`, 3)
}

// Retained messages: listed by filter and read; a delete reaches every replica, so a new
// wildcard subscriber on another replica no longer gets it. Publishing through the API reaches
// a subscriber on another replica.
func TestManagementAPIRetained(t *testing.T) {
	t.Parallel()
	c, addrs := startAPICluster(t)
	ctx := context.Background()
	sub, _ := connectV5(t, addrs["broker-c"], "dev-sub")
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "r/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	var pub map[string]any
	c.callJSON("POST", "/api/v1/publish", adminToken, map[string]any{"topic": "r/1", "payload": "one",
		"qos": 1, "retain": true, "replica": "broker-a"}, 200, &pub)
	c.callJSON("POST", "/api/v1/publish", adminToken, map[string]any{"topic": "r/2", "payload": "two",
		"qos": 0, "retain": true}, 200, nil)
	for range 2 {
		select {
		case m := <-sub.msgs:
			if m.Topic != "r/1" && m.Topic != "r/2" {
				t.Fatalf("subscriber got %s", m.Topic)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a message published through the API did not arrive on another replica")
		}
	}
	var page api.RetainedPage
	c.callJSON("GET", "/api/v1/retained?filter="+"r/%2B", readToken, nil, 200, &page)
	if len(page.Messages) != 2 || page.Messages[0].Topic != "r/1" || page.Messages[0].PayloadText != "one" {
		t.Fatalf("retained: %+v", page)
	}
	var one api.Retained
	c.callJSON("GET", "/api/v1/retained/r/2", readToken, nil, 200, &one)
	if string(one.Payload) != "two" {
		t.Fatalf("retained r/2: %+v", one)
	}
	c.callJSON("DELETE", "/api/v1/retained/r/1", adminToken, nil, 200, nil)
	c.callJSON("GET", "/api/v1/retained/r/1", readToken, nil, 404, nil)
	c.callJSON("DELETE", "/api/v1/retained/r/1", adminToken, nil, 404, nil)

	// A new wildcard subscriber on each replica gets r/2 and not r/1.
	for r, a := range addrs {
		late, _ := connectV5(t, a, "dev-late-"+r)
		if _, err := late.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "r/#", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		var got []string
		timeout := time.After(700 * time.Millisecond)
	collect:
		for {
			select {
			case m := <-late.msgs:
				got = append(got, m.Topic)
			case <-timeout:
				break collect
			}
		}
		if len(got) != 1 || got[0] != "r/2" {
			t.Fatalf("a new subscriber on %s got retained %v, want [r/2]", r, got)
		}
	}
	waitLog(t, c, `"action":"retained.delete"`, 2)
	waitLog(t, c, `"action":"publish"`, 2)
}
