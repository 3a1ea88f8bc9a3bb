package app

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/api"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
)

// startAPICluster is three real broker replicas on a real Redis and the gateway with a read-only
// and an admin token and a 1 s API timeout.
func startAPICluster(t *testing.T) (*testCluster, map[string]string) {
	c := startClusterWith(t, clusterOptions{more: []string{"broker-c"}, token: readToken,
		gateway: func(cfg *config.Config) {
			cfg.APIToken, cfg.AdminToken, cfg.APITimeout = readToken, adminToken, time.Second
		}})
	return c, c.brokerAddrs(3)
}

// listIDs lists the clients whose id starts with "dev-" (the probes' connections are clients too).
func (c *testCluster) listIDs(query string) (ids []string, page api.ClientsPage) {
	c.t.Helper()
	c.callJSON("GET", "/api/v1/clients?q=dev-"+query, readToken, nil, 200, &page)
	for _, ci := range page.Clients {
		ids = append(ids, ci.ClientID+"@"+ci.Replica)
	}
	return ids, page
}

// The management API against three real replicas: list and search find the clients of every
// replica, pages chain, one session shows its subscriptions; tokens decide who may change
// things; a kick ends a v5 client with DISCONNECT 0x98 and it leaves the list; audit lines name
// every change.
func TestManagementAPIClients(t *testing.T) {
	t.Parallel()
	c, addrs := startAPICluster(t)
	lostA := make(chan error, 1)
	connectV3(t, addrs["broker-a"], "dev-a", lostA)
	vb, _ := connectV5(t, addrs["broker-b"], "dev-b")
	vc, _ := connectV5(t, addrs["broker-c"], "dev-c")
	ctx := context.Background()
	if _, err := vc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "cmd/dev-c/#", QoS: 1, NoLocal: true}, {Topic: "all/+", QoS: 2, RetainHandling: 1}}}); err != nil {
		t.Fatal(err)
	}

	ids, page := c.listIDs("")
	if !slices.Equal(ids, []string{"dev-a@broker-a", "dev-b@broker-b", "dev-c@broker-c"}) || len(page.Unreachable) != 0 ||
		len(page.Replicas) != 3 {
		t.Fatalf("list: %v, %+v", ids, page)
	}
	for _, ci := range page.Clients {
		want := map[string]string{"dev-a": "3.1.1", "dev-b": "5.0", "dev-c": "5.0"}[ci.ClientID]
		if ci.Protocol != want || ci.KeepAlive == 0 || ci.RemoteAddr == "" || time.Since(ci.ConnectedAt) > time.Minute {
			t.Fatalf("client %+v", ci)
		}
	}
	if ids, _ := c.listIDs("B"); !slices.Equal(ids, []string{"dev-b@broker-b"}) {
		t.Fatalf("search dev-B: %v", ids)
	}
	var chained []string
	for after := ""; ; {
		var p api.ClientsPage
		c.callJSON("GET", "/api/v1/clients?q=dev-&limit=1&after="+url.QueryEscape(after), readToken, nil, 200, &p)
		for _, ci := range p.Clients {
			chained = append(chained, ci.ClientID)
		}
		if after = p.Next; after == "" {
			break
		}
	}
	if !slices.Equal(chained, []string{"dev-a", "dev-b", "dev-c"}) {
		t.Fatalf("pages of one: %v", chained)
	}
	var sess api.SessionAnswer
	c.callJSON("GET", "/api/v1/clients/dev-c", readToken, nil, 200, &sess)
	if sess.Replica != "broker-c" || !sess.Connected || len(sess.Subscriptions) != 2 ||
		sess.Subscriptions[0] != (wire.Subscription{Filter: "all/+", QoS: 2, RetainHandling: 1}) ||
		sess.Subscriptions[1] != (wire.Subscription{Filter: "cmd/dev-c/#", QoS: 1, NoLocal: true}) {
		t.Fatalf("session: %+v", sess)
	}
	c.callJSON("GET", "/api/v1/clients/nobody", readToken, nil, 404, nil)

	checkRoles(t, c)

	var kick api.KickAnswer
	c.callJSON("POST", "/api/v1/clients/dev-b/kick", adminToken, nil, 200, &kick)
	if len(kick.Kicked) != 1 || kick.Kicked[0] != (api.Kicked{ClientID: "dev-b", Replica: "broker-b"}) {
		t.Fatalf("kick: %+v", kick)
	}
	select {
	case d := <-vb.disc:
		if d.ReasonCode != 0x98 {
			t.Fatalf("kicked v5 client got DISCONNECT 0x%02X, want 0x98", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the kicked v5 client got no DISCONNECT")
	}
	if ids, _ := c.listIDs(""); !slices.Equal(ids, []string{"dev-a@broker-a", "dev-c@broker-c"}) {
		t.Fatalf("after the kick: %v", ids)
	}
	c.callJSON("POST", "/api/v1/clients/dev-b/kick", adminToken, nil, 404, nil)
	c.callJSON("POST", "/api/v1/clients/dev-a/kick", adminToken, nil, 200, nil)
	select {
	case <-lostA:
	case <-time.After(5 * time.Second):
		t.Fatal("the kicked 3.1.1 client's connection did not end")
	}
	waitLog(t, c, `"action":"kick"`, 3)
	if !strings.Contains(c.logs.String(), `"who":"admin"`) {
		t.Fatalf("audit lines do not name the role:\n%s", c.logs.String())
	}
}

// checkRoles: no token or a wrong one gets 401, the read-only token on a change 403, the admin
// token reads too, and whoami names the role.
func checkRoles(t *testing.T, c *testCluster) {
	t.Helper()
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/clients", "", 401},
		{"GET", "/api/v1/clients", "wrong-token-0123456789", 401},
		{"POST", "/api/v1/clients/dev-b/kick", "", 401},
		{"POST", "/api/v1/clients/dev-b/kick", readToken, 403},
		{"DELETE", "/api/v1/bans/client_id/dev-b", readToken, 403},
		{"POST", "/api/v1/publish", readToken, 403},
		{"GET", "/api/v1/clients", adminToken, 200},
	} {
		if code, b := c.call(tc.method, tc.path, tc.token, nil); code != tc.want {
			t.Fatalf("%s %s with %q: %d %s, want %d", tc.method, tc.path, tc.token, code, b, tc.want)
		}
	}
	var who map[string]string
	c.callJSON("GET", "/api/v1/whoami", adminToken, nil, 200, &who)
	if who["role"] != "admin" {
		t.Fatalf("whoami: %v", who)
	}

}

// waitLog waits until the gateway's log has n lines containing s.
func waitLog(t *testing.T, c *testCluster, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(c.logs.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d log lines with %s, want %d:\n%s", strings.Count(c.logs.String(), s), s, n, c.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A replica stopped with SIGSTOP mid-request: the list answers within the timeout, with the
// other replicas' clients, naming the stopped one.
func TestManagementAPIStoppedReplica(t *testing.T) {
	t.Parallel()
	c, addrs := startAPICluster(t)
	connectV5(t, addrs["broker-a"], "dev-a")
	connectV5(t, addrs["broker-c"], "dev-c")
	p := c.brokers["broker-c"]
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
	start := time.Now()
	ids, page := c.listIDs("")
	took := time.Since(start)
	if err := p.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if took > 3*time.Second || len(page.Unreachable) != 1 || page.Unreachable[0].Replica != "broker-c" ||
		!slices.Equal(ids, []string{"dev-a@broker-a"}) {
		t.Fatalf("after %s: %v, %+v", took, ids, page)
	}
	t.Logf("stopped replica named after %s: %s", took.Round(time.Millisecond), page.Unreachable[0].Error)
	// Killed: named at once (nobody listens on its control channel), well before the timeout.
	if err := c.brokers["broker-c"].Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start = time.Now()
	_, page = c.listIDs("")
	if len(page.Unreachable) != 1 || page.Unreachable[0].Replica != "broker-c" {
		t.Fatalf("killed replica: %+v", page)
	}
	t.Logf("killed replica named after %s: %s", time.Since(start).Round(time.Millisecond), page.Unreachable[0].Error)
}
