package app

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// logBuffer collects a broker's log lines for a test to read.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// serveLogged is serve with the broker's log kept (JSON lines).
func serveLogged(t *testing.T, mod func(*config.Config)) (Addrs, *logBuffer) {
	t.Helper()
	cfg := config.Default()
	cfg.MQTTAddr, cfg.HTTPAddr, cfg.SysInterval = "127.0.0.1:0", "", 0
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, zerolog.New(logs), func(a Addrs) { addrs <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addrs:
		return a, logs
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("broker did not start")
	}
	return Addrs{}, nil
}

// v5connect sends a v5 CONNECT (with a user name and password when user is set) and returns the
// CONNACK.
func v5connect(t *testing.T, addr, id, user, pass string) (*paho.Connack, *paho.Client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err == nil {
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	}
	return ca, c, err
}

// Anonymous access off and no password file: there is no way to authenticate, so every client is
// refused, with or without a user name, v3 and v5, and the broker says so at start (mosquitto 2.0
// behaves the same). mosquitto_pub, as a user would try it, is refused too.
func TestAnonymousOffWithoutPasswordFileRefusesEveryone(t *testing.T) {
	a, logs := serveLogged(t, func(c *config.Config) { c.AllowAnonymous = false })
	if !strings.Contains(logs.String(), "there is no way to authenticate, so every client is refused") ||
		!strings.Contains(logs.String(), `"severity":"ERROR"`) {
		t.Fatalf("no start-up line saying why:\n%s", logs)
	}
	if ca, _, _ := v5connect(t, a.MQTT, "v5-user", "anyone", "anything"); ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("v5 with a user name: %+v, want 0x86", ca)
	}
	if ca, _, _ := v5connect(t, a.MQTT, "v5-anon", "", ""); ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("v5 anonymous: %+v, want 0x86", ca)
	}
	if _, err := v3(t, "tcp://"+a.MQTT, "v3-anon", nil); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("3.1.1 anonymous: %v, want 0x05", err)
	}
	if _, err := v3(t, "tcp://"+a.MQTT, "v3-user", func(o *pahov3.ClientOptions) { o.SetUsername("anyone").SetPassword("x") }); !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("3.1.1 with a user name: %v, want 0x05", err)
	}
	host, port, _ := net.SplitHostPort(a.MQTT)
	for _, args := range [][]string{
		{"-u", "anyone", "-P", "anything"},
		{"-u", "anyone", "-P", "anything", "-V", "mqttv5"},
		{},
	} {
		out, err := exec.Command("mosquitto_pub", append([]string{"-h", host, "-p", port, "-t", "t", "-m", "m", "-q", "1"}, args...)...).CombinedOutput()
		if err == nil {
			t.Fatalf("mosquitto_pub %v was accepted: %s", args, out)
		}
		if !strings.Contains(strings.ToLower(string(out)), "not authori") && !strings.Contains(strings.ToLower(string(out)), "bad user name or password") {
			t.Fatalf("mosquitto_pub %v: %v %s", args, err, out)
		}
	}
}

// The probe topics belong to the probe user: another user is refused publishing (v5 PUBACK 0x87,
// 3.x dropped), subscribing (0x87 / 0x80) and receiving there, even with an ACL that grants
// every topic; the probe user publishes and receives its probes.
func TestProbeTopicsRefusedToOtherUsers(t *testing.T) {
	dir := t.TempDir()
	hash, err := auth.HashPassword("s3cret", auth.PBKDF2)
	if err != nil {
		t.Fatal(err)
	}
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	writeFile(t, pw, "health-gateway:"+hash+"\ndevice:"+hash+"\n")
	// Everyone may use everything, the $mcloudtt tree included: only the probe rule protects it.
	writeFile(t, acl, "pattern readwrite #\npattern readwrite $mcloudtt/#\n")
	a, logs := serveLogged(t, func(c *config.Config) {
		c.PasswordFile, c.ACLFile, c.AllowAnonymous, c.ProbeUsername = pw, acl, false, "health-gateway"
	})
	if !strings.Contains(logs.String(), `"probe_user":"health-gateway"`) {
		t.Fatalf("start-up log lacks the probe user:\n%s", logs)
	}
	const probe = "$mcloudtt/probe/gateway-1/replica-a/replica-a"
	login := func(user string) func(*pahov3.ClientOptions) {
		return func(o *pahov3.ClientOptions) { o.SetUsername(user).SetPassword("s3cret") }
	}
	gw, err := v3(t, "tcp://"+a.MQTT, "gateway-1", login("health-gateway"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	if tok := gw.Subscribe("$mcloudtt/probe/gateway-1/#", 1, func(_ pahov3.Client, m pahov3.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil ||
		tok.(*pahov3.SubscribeToken).Result()["$mcloudtt/probe/gateway-1/#"] != 1 {
		t.Fatalf("the probe user's subscription: %v %v", tok.Error(), tok.(*pahov3.SubscribeToken).Result())
	}

	dev, err := v3(t, "tcp://"+a.MQTT, "device-v3", login("device"))
	if err != nil {
		t.Fatal(err)
	}
	devGot := make(chan string, 10)
	tok := dev.SubscribeMultiple(map[string]byte{"$mcloudtt/probe/#": 1, "$mcloudtt/#": 1, "$share/g/$mcloudtt/probe/#": 1, "#": 1},
		func(_ pahov3.Client, m pahov3.Message) { devGot <- m.Topic() })
	tok.WaitTimeout(5 * time.Second)
	res := tok.(*pahov3.SubscribeToken).Result()
	if res["$mcloudtt/probe/#"] != 0x80 || res["$mcloudtt/#"] != 0x80 || res["$share/g/$mcloudtt/probe/#"] != 0x80 || res["#"] != 1 {
		t.Fatalf("device SUBACK %v", res)
	}
	dev.Publish(probe, 1, false, "forged-v3").WaitTimeout(5 * time.Second)

	ca, c5, err := v5connect(t, a.MQTT, "device-v5", "device", "s3cret")
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("device v5: %v %+v", err, ca)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if resp, err := c5.Publish(ctx, &paho.Publish{Topic: probe, QoS: 1, Payload: []byte("forged-v5")}); resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("device's v5 probe publish: %+v %v, want 0x87", resp, err)
	}
	if sa, _ := c5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$mcloudtt/probe/+/+/+", QoS: 1}}}); sa == nil || sa.Reasons[0] != 0x87 {
		t.Fatalf("device's v5 probe subscription: %+v", sa)
	}

	// The gateway's own probe goes through, and only it arrives.
	gw.Publish(probe, 1, false, "probe-1").WaitTimeout(5 * time.Second)
	select {
	case m := <-got:
		if m != "probe-1" {
			t.Fatalf("the probe subscription got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the probe user's own probe did not arrive")
	}
	select {
	case m := <-got:
		t.Fatalf("a forged probe arrived: %q", m)
	case tp := <-devGot:
		t.Fatalf("the device received %s", tp)
	case <-time.After(300 * time.Millisecond):
	}
}

// With BROKER_WS_ALLOWED_ORIGINS, a browser page from another origin cannot open MQTT over
// WebSocket (403); a listed origin connects and speaks MQTT; a bad entry stops the start.
func TestWebSocketOriginAllowList(t *testing.T) {
	a, _ := serveLogged(t, func(c *config.Config) {
		c.WSAddr = "127.0.0.1:0"
		c.WSAllowedOrigins = []string{"https://app.example.com"}
	})
	url := "ws://" + a.WS + "/mqtt"
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second}
	_, resp, err := d.Dial(url, http.Header{"Origin": {"https://evil.example.net"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v %v, want 403", err, resp)
	}
	c, err := v3(t, url, "browser", func(o *pahov3.ClientOptions) {
		o.SetHTTPHeaders(http.Header{"Origin": {"https://app.example.com"}})
	})
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	roundTrip(t, c, c, "ws/allowed")

	cfg := config.Default()
	cfg.WSAllowedOrigins = []string{"app.example.com"}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "BROKER_WS_ALLOWED_ORIGINS") {
		t.Fatalf("a bad origin entry: %v", err)
	}
}
