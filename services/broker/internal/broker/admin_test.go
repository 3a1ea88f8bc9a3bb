package broker_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// admin sends one management request to the broker, as the bus would, and decodes the answer.
func admin(t *testing.T, b *testBroker, op string, body, out any) error {
	t.Helper()
	raw, _ := json.Marshal(body)
	v, err := b.HandleAdmin(context.Background(), op, raw)
	if err == nil && out != nil {
		js, _ := json.Marshal(v)
		if err := json.Unmarshal(js, out); err != nil {
			t.Fatal(err)
		}
	}
	return err
}

// connackCode connects a v5 client and returns the CONNACK's reason code.
func connackCode(t *testing.T, addr, id string) byte {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if ca == nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	if ca.ReasonCode == 0 {
		_ = c.Disconnect(&paho.Disconnect{})
	}
	return ca.ReasonCode
}

// The management requests on one replica: the client list and a session with its subscription
// options, a kick (DISCONNECT 0x98, counted), a ban that kicks and refuses at CONNECT (0x8A) until
// it is lifted, and a session this replica does not hold.
func TestAdminRequests(t *testing.T) {
	b := startBroker(t)
	v := v5Client(t, b.Addr, &paho.Connect{ClientID: "dev-1", CleanStart: true})
	if _, err := v.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "a/#", QoS: 1, RetainAsPublished: true}}}); err != nil {
		t.Fatal(err)
	}
	var page wire.ClientsPage
	if err := admin(t, b, wire.OpClients, wire.ClientsQuery{Search: "DEV"}, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Clients) != 1 || page.Clients[0].ClientID != "dev-1" || page.Clients[0].Protocol != "5.0" ||
		page.Clients[0].Subscriptions != 1 || page.Clients[0].KeepAlive != 30 {
		t.Fatalf("clients: %+v", page)
	}
	var si wire.SessionInfo
	if err := admin(t, b, wire.OpSession, wire.ClientRef{ClientID: "dev-1"}, &si); err != nil {
		t.Fatal(err)
	}
	if !si.Connected || si.ExpirySeconds != 0 || len(si.Subscriptions) != 1 ||
		si.Subscriptions[0] != (wire.Subscription{Filter: "a/#", QoS: 1, RetainAsPublished: true}) {
		t.Fatalf("session: %+v", si)
	}
	if err := admin(t, b, wire.OpSession, wire.ClientRef{ClientID: "nobody"}, nil); err == nil || err.Error() != wire.ErrTextNotHere {
		t.Fatalf("session of nobody: %v", err)
	}
	var kr wire.KickResult
	if err := admin(t, b, wire.OpKick, wire.ClientRef{ClientID: "dev-1"}, &kr); err != nil || len(kr.Kicked) != 1 {
		t.Fatalf("kick: %+v %v", kr, err)
	}
	select {
	case d := <-v.discs:
		if d.ReasonCode != 0x98 {
			t.Fatalf("DISCONNECT 0x%02X, want 0x98", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT on kick")
	}
	if n := b.Stats().Disconnects.Kicked; n != 1 {
		t.Fatalf("kicked disconnects counted: %d", n)
	}

	v = v5Client(t, b.Addr, &paho.Connect{ClientID: "dev-1", CleanStart: true})
	ban := wire.Ban{Kind: wire.BanClientID, Value: "dev-1", Until: time.Now().Add(time.Minute)}
	if err := admin(t, b, wire.OpBan, ban, &kr); err != nil || len(kr.Kicked) != 1 {
		t.Fatalf("ban: %+v %v", kr, err)
	}
	<-v.discs
	if code := connackCode(t, b.Addr, "dev-1"); code != 0x8A {
		t.Fatalf("banned client: CONNACK 0x%02X, want 0x8A", code)
	}
	if code := connackCode(t, b.Addr, "dev-2"); code != 0 {
		t.Fatalf("another client: CONNACK 0x%02X", code)
	}
	if err := admin(t, b, wire.OpUnban, ban, nil); err != nil {
		t.Fatal(err)
	}
	if code := connackCode(t, b.Addr, "dev-1"); code != 0 {
		t.Fatalf("after the ban was lifted: CONNACK 0x%02X", code)
	}

	// An offline persistent session: its expiry and when it ends.
	ps := v5Client(t, b.Addr, &paho.Connect{ClientID: "dev-p", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: paho.Uint32(600)}})
	if err := ps.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := admin(t, b, wire.OpSession, wire.ClientRef{ClientID: "dev-p"}, &si); err != nil {
			t.Fatal(err)
		}
		if !si.Connected || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if si.Connected || si.ExpirySeconds != 600 || si.ExpiresAt == nil || time.Until(*si.ExpiresAt) < 590*time.Second {
		t.Fatalf("offline session: %+v", si)
	}
	if err := admin(t, b, "no-such-op", nil, nil); err == nil || err.Error() != wire.ErrTextUnknownOp {
		t.Fatalf("unknown op: %v", err)
	}
}
