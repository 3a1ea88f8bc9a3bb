package app

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
)

// A production-like cluster: Redis speaks TLS only and gives the services a restricted ACL user;
// the brokers refuse anonymous clients, check a password file and an ACL, and reserve the probe
// topics for the gateway's user; the gateway's API needs its token. The probes still turn every
// pair green, and the API answers 401 without the token.
func TestProbesInASecuredCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw, acl, tokenFile := filepath.Join(dir, "passwords"), filepath.Join(dir, "acl"), filepath.Join(dir, "token")
	broker := proctest.Build(t, "github.com/mcloudtt/mcloudtt/services/broker/cmd/broker")
	for i, user := range []string{"health-gateway", "device"} {
		args := []string{"passwd", "-b", pw, user, user + "-password"}
		if i == 0 {
			args = []string{"passwd", "-c", "-b", pw, user, user + "-password"}
		}
		if out, err := exec.Command(broker, args...).CombinedOutput(); err != nil {
			t.Fatalf("broker passwd: %v %s", err, out)
		}
	}
	// The ACL file does not mention the probe topics: BROKER_PROBE_USERNAME grants them.
	writeTestFile(t, acl, "user device\ntopic readwrite devices/#\n")
	const token = "0123456789abcdef-gateway-token"
	writeTestFile(t, tokenFile, token+"\n")

	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword("default-secret"),
		redistest.WithACLUser("mcloudtt-services", "services-secret"))
	c := startClusterWith(t, clusterOptions{
		redis: rs,
		brokerEnv: []string{"BROKER_ALLOW_ANONYMOUS=false", "BROKER_PASSWORD_FILE=" + pw,
			"BROKER_ACL_FILE=" + acl, "BROKER_PROBE_USERNAME=health-gateway"},
		gateway: func(cfg *config.Config) {
			cfg.MQTTUsername, cfg.MQTTPassword = "health-gateway", "health-gateway-password"
			cfg.APITokenFile = tokenFile
		},
		token: token,
	})
	c.waitFor("all green over TLS with authenticated probes", 20*time.Second, allGreen)

	for _, path := range []string{"/api/v1/cluster", "/"} {
		resp, err := http.Get(c.base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "broker-a") {
			t.Fatalf("GET %s without the token: %d %.100s", path, resp.StatusCode, b)
		}
	}
	if resp, err := http.Get(c.base + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz without the token: %v %v", resp, err)
	}
}

// A gateway whose Redis password is wrong starts, is not ready, says why on /readyz and in its
// log, and keeps retrying.
func TestGatewayWrongRedisPasswordNotReady(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithACLUser("mcloudtt-services", "right"))
	cfg := config.Default()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.RedisAddrs = []string{rs.Addr()}
	cfg.Env = rs.Env()
	wrong := filepath.Join(t.TempDir(), "password")
	writeTestFile(t, wrong, "wrong\n")
	cfg.Env.RedisPasswordFile = wrong
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, zerolog.New(logs), func(a string) { addr <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("gateway: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not start")
	}
	const cause = "wrong Redis user name or password"
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("ready with a wrong Redis password")
		}
		if strings.Contains(string(b), cause) && strings.Count(logs.String(), cause) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %q; log:\n%s", resp.StatusCode, b, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// The API token file is read again when it changes (a rotated Secret); a file that turns invalid
// keeps the previous token in force.
func TestAPITokenFileRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeTestFile(t, path, "first-token-0123456789\n")
	f := &tokenFile{path: path, log: zerolog.Nop()}
	if got := f.get(); got != "first-token-0123456789" {
		t.Fatalf("token %q", got)
	}
	writeTestFile(t, path, "second-token-rotated-0123\n")
	if got := f.get(); got != "second-token-rotated-0123" {
		t.Fatalf("after rotation: %q", got)
	}
	writeTestFile(t, path, "short\n")
	if got := f.get(); got != "second-token-rotated-0123" {
		t.Fatalf("an invalid file replaced the token: %q", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := f.get(); got != "second-token-rotated-0123" {
		t.Fatalf("a missing file replaced the token: %q", got)
	}
}
