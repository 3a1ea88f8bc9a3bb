package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/monitor"
)

// Tokens of the management API tests.
const (
	readToken  = "read-only-token-0123456789abcdef"
	adminToken = "admin-token-0123456789abcdef-xyz"
)

// call sends an API request with token (empty: none) and body (JSON-encoded when not nil), and
// returns the status and the body.
func (c *testCluster) call(method, path, token string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// callJSON is call expecting status want, decoding the answer into out (when not nil).
func (c *testCluster) callJSON(method, path, token string, body any, want int, out any) {
	c.t.Helper()
	code, b := c.call(method, path, token, body)
	if code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// brokerAddrs waits until n brokers are up and returns their MQTT addresses by id.
func (c *testCluster) brokerAddrs(n int) map[string]string {
	c.t.Helper()
	cl, _ := c.waitFor("brokers up", 20*time.Second, func(cl monitor.Cluster) bool {
		up := 0
		for _, m := range cl.Members {
			if m.Kind == "broker" && m.Up && m.Address != "" {
				up++
			}
		}
		return up == n
	})
	out := map[string]string{}
	for _, m := range cl.Members {
		out[m.ReplicaID] = m.Address
	}
	return out
}

// v5Client is a paho.golang MQTT 5 client with what the broker sent it.
type v5Client struct {
	*paho.Client
	disc chan *paho.Disconnect
	msgs chan *paho.Publish
}

// connectV5 connects a v5 client; it returns the CONNACK's reason code and, when accepted, the
// client (disconnected at the end of the test).
func connectV5(t *testing.T, addr, id string) (*v5Client, byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	vc := &v5Client{disc: make(chan *paho.Disconnect, 1), msgs: make(chan *paho.Publish, 16)}
	vc.Client = paho.NewClient(paho.ClientConfig{Conn: conn,
		OnServerDisconnect: func(d *paho.Disconnect) { vc.disc <- d },
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			vc.msgs <- pr.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := vc.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
	if ca == nil {
		_ = conn.Close()
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	if ca.ReasonCode != 0 {
		_ = conn.Close()
		return nil, ca.ReasonCode
	}
	t.Cleanup(func() { _ = vc.Disconnect(&paho.Disconnect{}) })
	return vc, 0
}

// connectV3 connects a paho 3.1.1 client; it returns the CONNACK's return code and the client
// when accepted. lost receives the connection's end.
func connectV3(t *testing.T, addr, id string, lost chan<- error) (pahov3.Client, byte) {
	t.Helper()
	o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).
		SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(5 * time.Second)
	if lost != nil {
		o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { lost <- err })
	}
	cl := pahov3.NewClient(o)
	tok := cl.Connect()
	tok.Wait()
	if err := tok.Error(); err != nil {
		if ct, ok := tok.(*pahov3.ConnectToken); ok && ct.ReturnCode() != 0 {
			return nil, ct.ReturnCode()
		}
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl, 0
}
