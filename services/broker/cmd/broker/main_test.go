package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

func TestStopsCleanlyOnSIGTERM(t *testing.T) {
	proctest.CheckStopsOnSIGTERM(t, proctest.Build(t, "."), "BROKER_MQTT_ADDR=127.0.0.1:0", "BROKER_HTTP_ADDR=127.0.0.1:0", "BROKER_LOG_FORMAT=json")
}

func TestBadConfigNamesTheField(t *testing.T) {
	proctest.CheckBadConfigNamesField(t, proctest.Build(t, "."), map[string]string{
		"BROKER_LOG_LEVEL=loud":                 "BROKER_LOG_LEVEL",
		"BROKER_SHUTDOWN_TIMEOUT=soon":          "BROKER_SHUTDOWN_TIMEOUT",
		"BROKER_MAX_PACKET_SIZE=10":             "BROKER_MAX_PACKET_SIZE",
		"BROKER_TLS_ADDR=:0":                    "BROKER_TLS_CERT_FILE",
		"BROKER_SUBACK_DENIED=maybe":            "BROKER_SUBACK_DENIED",
		"BROKER_PASSWORD_FILE=/nonexistent":     "/nonexistent",
		"BROKER_REDIS_TLS_CA_FILE=/ca.crt":      "BROKER_REDIS_TLS_CA_FILE",
		"BROKER_REDIS_TLS=yes please":           "BROKER_REDIS_TLS",
		"BROKER_WS_ALLOWED_ORIGINS=example.com": "BROKER_WS_ALLOWED_ORIGINS",
		"BROKER_IOTCORE=true":                   "BROKER_IOTCORE_PROJECT",
		"BROKER_IOTCORE_REGISTRY=reg":           "BROKER_IOTCORE",
		"BROKER_JWT_ENABLED=true":               "BROKER_JWT_ENABLED",
		"BROKER_JWT_CLOCK_SKEW=a while":         "BROKER_JWT_CLOCK_SKEW",
	})
}

// SIGTERM drains: a v5 client hears DISCONNECT 0x8B (server shutting down) and the process exits 0.
func TestSIGTERMDrainTellsV5Clients(t *testing.T) {
	bin := proctest.Build(t, ".")
	mqttAddr, httpAddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	p := proctest.Start(t, bin, []string{"BROKER_MQTT_ADDR=" + mqttAddr, "BROKER_HTTP_ADDR=" + httpAddr, "BROKER_LOG_FORMAT=json"})
	if !p.WaitOutput("broker started", 10*time.Second) {
		t.Fatalf("no start:\n%s", p.Output())
	}
	conn, err := net.Dial("tcp", mqttAddr)
	if err != nil {
		t.Fatal(err)
	}
	discs := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(d *paho.Disconnect) { discs <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "drained", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get("http://" + httpAddr + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("not ready before SIGTERM: %v", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-discs:
		if d.ReasonCode != 0x8B {
			t.Fatalf("DISCONNECT reason 0x%02X, want 0x8B", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT on SIGTERM")
	}
	if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil && resp.StatusCode == 200 {
		t.Fatal("still ready after SIGTERM")
	}
	code, ok := p.Wait(ctx)
	if !ok || code != 0 {
		t.Fatalf("exit %d (exited %v)\n%s", code, ok, p.Output())
	}
}

// SIGHUP reloads the password file: a user added with `broker passwd` can connect afterwards.
func TestSIGHUPReloadsPasswordFile(t *testing.T) {
	bin := proctest.Build(t, ".")
	dir := t.TempDir()
	pw := dir + "/passwd"
	run := func(args ...string) {
		t.Helper()
		p := proctest.Start(t, bin, nil, append([]string{"passwd"}, args...)...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if code, ok := p.Wait(ctx); !ok || code != 0 {
			t.Fatalf("broker passwd %v: exit %d\n%s", args, code, p.Output())
		}
	}
	run("-c", "-b", pw, "alice", "one")
	mqttAddr := proctest.FreeAddr(t)
	p := proctest.Start(t, bin, []string{"BROKER_MQTT_ADDR=" + mqttAddr, "BROKER_HTTP_ADDR=", "BROKER_PASSWORD_FILE=" + pw,
		"BROKER_ALLOW_ANONYMOUS=false", "BROKER_LOG_FORMAT=json"})
	if !p.WaitOutput("broker started", 10*time.Second) {
		t.Fatalf("no start:\n%s", p.Output())
	}
	connect := func(user, pass string) byte {
		conn, err := net.Dial("tcp", mqttAddr)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ca, _ := c.Connect(ctx, &paho.Connect{ClientID: user, CleanStart: true, KeepAlive: 30,
			Username: user, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true})
		if ca == nil {
			t.Fatal("no CONNACK")
		}
		if ca.ReasonCode == 0 {
			_ = c.Disconnect(&paho.Disconnect{})
		}
		return ca.ReasonCode
	}
	if rc := connect("alice", "one"); rc != 0 {
		t.Fatalf("alice: 0x%02X", rc)
	}
	if rc := connect("bob", "two"); rc != 0x86 {
		t.Fatalf("bob before reload: 0x%02X", rc)
	}
	run("-b", pw, "bob", "two")
	if err := p.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !p.WaitOutput("auth files reloaded", 5*time.Second) {
		t.Fatalf("no reload:\n%s", p.Output())
	}
	if rc := connect("bob", "two"); rc != 0 {
		t.Fatalf("bob after reload: 0x%02X", rc)
	}
	// A broken file is refused and the old one stays in force.
	if err := os.WriteFile(pw, []byte("broken line without a hash\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = p.Signal(syscall.SIGHUP)
	if !p.WaitOutput("not reloaded", 5*time.Second) || !strings.Contains(p.Output(), "line 1") {
		t.Fatalf("bad file not reported with its line:\n%s", p.Output())
	}
	if rc := connect("bob", "two"); rc != 0 {
		t.Fatalf("bob after a failed reload: 0x%02X", rc)
	}
}

func TestCommandLine(t *testing.T) {
	proctest.CheckCommandLine(t, proctest.Build(t, "."), "broker passwd", "broker devices", "BROKER_JWT_ENABLED", "BROKER_MQTT_ADDR", "BROKER_REDIS_ADDRS", "README.md")
}
