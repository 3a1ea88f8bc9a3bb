package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func TestPayloadRoundTrip(t *testing.T) {
	p := newPayload(64, 7)
	stampPayload(p, 123456, 987654321012)
	pub, seq, sent, ok := parsePayload(p)
	if !ok || pub != 7 || seq != 123456 || sent != 987654321012 || p[63] != 'x' {
		t.Fatalf("got %d %d %d %v", pub, seq, sent, ok)
	}
	if _, _, _, ok := parsePayload(p[:15]); ok {
		t.Fatal("15-byte payload accepted")
	}
}

func TestFlagValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-mode", "x"}, "-mode"},
		{[]string{"-topology", "pairwise", "-pubs", "2", "-subs", "3"}, "pairwise"},
		{[]string{"-qos", "3"}, "-pub-qos"},
		{[]string{"-sub-qos", "3"}, "-sub-qos"},
		{[]string{"-size", "8"}, "-size"},
		{[]string{"-inflight", "0"}, "-inflight"},
		{[]string{"-v", "3"}, "-v"},
		{[]string{"-mode", "conns", "-conns", "0"}, "-conns"},
		{[]string{"-rate", "-1"}, "-rate"},
		{[]string{"-mode", "storm", "-reconnect-addrs", "127.0.0.1:1"}, "-storm-kill"},
		{[]string{"-mode", "storm", "-storm-kill", "1"}, "-reconnect-addrs"},
		{[]string{"-mode", "conns", "-src", "localhost"}, "-src"},
		{[]string{"-mode", "conns", "-tls-resume"}, "-tls-resume"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		_, err := parseFlags(tc.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
	c, err := parseFlags([]string{"-qos", "2", "-sub-qos", "1"}, &bytes.Buffer{})
	if err != nil || c.PubQoS != 2 || c.SubQoS != 1 {
		t.Fatalf("qos defaults: %+v %v", c, err)
	}
}

// runTool runs Main and returns its exit code and the decoded last line of stdout.
func runTool(t *testing.T, args ...string) (int, Summary) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var s Summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("last line is not JSON: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	if testing.Verbose() {
		t.Logf("%v ->\n%s", args, out.String())
	}
	return code, s
}

func TestBadCommandLineStillEmitsJSON(t *testing.T) {
	code, s := runTool(t, "-qos", "7")
	if code != 2 || s.OK || s.Errors != 1 || !strings.Contains(s.FirstError, "qos") {
		t.Fatalf("code %d summary %+v", code, s)
	}
}

func TestBrokerDown(t *testing.T) {
	addr := proctest.FreeAddr(t)
	code, s := runTool(t, "-addr", addr, "-pubs", "2", "-subs", "2", "-n", "10", "-timeout", "5s", "-q")
	if code != 1 || s.OK || s.ConnFail != 2 || s.Errors == 0 || !strings.Contains(s.FirstError, "refused") {
		t.Fatalf("pubsub: code %d summary %+v", code, s)
	}
	code, s = runTool(t, "-addr", addr, "-mode", "conns", "-conns", "20", "-settle", "0s", "-timeout", "5s", "-q")
	if code != 1 || s.OK || s.ConnFail != 20 || s.Conns != 0 {
		t.Fatalf("conns: code %d summary %+v", code, s)
	}
}

// startServer runs a server binary until the test ends and returns its address and PID.
func startServer(t *testing.T, bin string, args func(addr, dir string) []string) (string, int) {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s is not installed (Debian package %q); skipping the integration test against it", bin, bin)
	}
	dir := t.TempDir()
	addr := proctest.FreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, path, args(addr, dir)...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cancel()
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if i == 100 {
			t.Fatalf("%s did not listen on %s: %v\n%s", bin, addr, err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, cmd.Process.Pid
}

func startMosquitto(t *testing.T) (string, int) {
	return startServer(t, "mosquitto", func(addr, dir string) []string {
		_, port, _ := net.SplitHostPort(addr)
		conf := filepath.Join(dir, "mosquitto.conf")
		// No queue limit, so any loss is a real fault; Nagle off, as our tool and Go brokers.
		body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nset_tcp_nodelay true\npersistence false\n", port)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"-c", conf}
	})
}

func TestMosquittoPubSub(t *testing.T) {
	addr, pid := startMosquitto(t)
	for _, v := range []string{"4", "5"} {
		for _, q := range []int{0, 1, 2} {
			for _, topo := range []string{"fanin", "pairwise"} {
				t.Run(fmt.Sprintf("v%s/qos%d/%s", v, q, topo), func(t *testing.T) {
					pubs, subs := 3, 2
					if topo == "pairwise" {
						subs = 3
					}
					const n = 2000
					code, s := runTool(t, "-addr", addr, "-broker-pid", strconv.Itoa(pid), "-v", v,
						"-topology", topo, "-pubs", strconv.Itoa(pubs), "-subs", strconv.Itoa(subs), "-n", strconv.Itoa(n),
						"-qos", strconv.Itoa(q), "-inflight", "16", "-warmup", "20ms", "-drain", "2s", "-timeout", "20s")
					expected := int64(pubs * n * subs)
					if topo == "pairwise" {
						expected = int64(pubs * n)
					}
					if code != 0 || !s.OK || s.Errors != 0 {
						t.Fatalf("code %d: %d errors, first %q", code, s.Errors, s.FirstError)
					}
					if s.Expected != expected || s.Received != expected || s.Lost != 0 || s.Dup != 0 || s.Reordered != 0 || s.Unexpected != 0 {
						t.Fatalf("expected %d received %d lost %d dup %d reordered %d unexpected %d",
							s.Expected, s.Received, s.Lost, s.Dup, s.Reordered, s.Unexpected)
					}
					if s.QoS != q || s.Sent != int64(pubs*n) || (q > 0 && s.Acked != s.Sent) || (q == 0 && s.Acked != 0) {
						t.Fatalf("qos %d sent %d acked %d", s.QoS, s.Sent, s.Acked)
					}
					if s.DelivRate <= 0 || s.PubRate <= 0 || s.P50us <= 0 || s.P99us < s.P50us || s.Maxus < s.P999us {
						t.Fatalf("rates/latency not sane: %+v", s)
					}
					if s.BrokerPID != pid || s.RSSAfterKB <= 0 || s.HWMKB < s.RSSAfterKB || s.BrokerCPU < 0 || s.Conns != pubs+subs {
						t.Fatalf("broker stats not sane: %+v", s)
					}
				})
			}
		}
	}
}

func TestMosquittoPaced(t *testing.T) {
	addr, _ := startMosquitto(t)
	// 400 messages at 2000/s in total over 2 publishers take 0.2 s.
	code, s := runTool(t, "-addr", addr, "-pubs", "2", "-subs", "1", "-n", "200", "-rate", "2000", "-warmup", "0s", "-q")
	if code != 0 || s.Lost != 0 || s.PubSecs < 0.18 || s.PubSecs > 1.5 {
		t.Fatalf("code %d lost %d pub_s %v", code, s.Lost, s.PubSecs)
	}
	// Paced latency on an idle loopback broker is well under 50 ms.
	if s.P50us <= 0 || s.P50us > 50000 {
		t.Fatalf("p50 %vµs", s.P50us)
	}
}

// A reconnect storm: clients on one mosquitto, which is killed; all come back on another.
func TestMosquittoStorm(t *testing.T) {
	victim, pid := startMosquitto(t)
	survivor, _ := startMosquitto(t)
	code, s := runTool(t, "-addr", victim, "-mode", "storm", "-storm-kill", strconv.Itoa(pid),
		"-reconnect-addrs", survivor, "-conns", "200", "-dial-par", "16", "-settle", "100ms", "-timeout", "30s")
	if code != 0 || !s.OK || s.StormClients != 200 || s.StormFailed != 0 || s.StormAttempts < 200 || s.StormSecs <= 0 {
		t.Fatalf("code %d %+v", code, s)
	}
}

func TestMosquittoConns(t *testing.T) {
	addr, pid := startMosquitto(t)
	for _, v := range []string{"4", "5"} {
		code, s := runTool(t, "-addr", addr, "-broker-pid", strconv.Itoa(pid), "-mode", "conns", "-v", v,
			"-conns", "300", "-dial-par", "16", "-settle", "200ms", "-timeout", "20s")
		if code != 0 || !s.OK || s.Conns != 300 || s.ConnFail != 0 || s.ConnRate <= 0 || s.ConnackP50us <= 0 {
			t.Fatalf("v%s: code %d %+v", v, code, s)
		}
		if s.RSSAfterKB <= 0 || s.RSSBeforeKB <= 0 || s.RSSPerConnB < 0 || s.RSSPerConnB > 1<<20 {
			t.Fatalf("v%s: broker rss not sane: %+v", v, s)
		}
	}
}

func TestRedis(t *testing.T) {
	addr, pid := startServer(t, "redis-server", func(addr, dir string) []string {
		_, port, _ := net.SplitHostPort(addr)
		return []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}
	})
	for _, topo := range []string{"fanin", "pairwise"} {
		code, s := runTool(t, "-mode", "redis", "-addr", addr, "-broker-pid", strconv.Itoa(pid), "-topology", topo,
			"-pubs", "3", "-subs", "3", "-n", "3000", "-inflight", "16", "-warmup", "20ms", "-timeout", "20s", "-q")
		if code != 0 || !s.OK || s.Lost != 0 || s.Dup != 0 || s.Reordered != 0 || s.Received == 0 || s.Acked != 9000 || s.Window != 16 {
			t.Fatalf("%s: code %d %+v", topo, code, s)
		}
	}
}

// Redis mode over TLS as a restricted ACL user, configured as the services are
// (LOADGEN_REDIS_*), and a clear error for a wrong password or TLS files without TLS.
func TestRedisOverTLSAsACLUser(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword("admin"), redistest.WithACLUser("bench", "bench-pw"))
	env := rs.Env()
	t.Setenv("LOADGEN_REDIS_USERNAME", env.RedisUsername)
	t.Setenv("LOADGEN_REDIS_PASSWORD_FILE", env.RedisPasswordFile)
	t.Setenv("LOADGEN_REDIS_TLS", "true")
	t.Setenv("LOADGEN_REDIS_TLS_CA_FILE", env.RedisTLSCAFile)
	// The ACL user may use only mcloudtt:* channels.
	args := []string{"-mode", "redis", "-addr", rs.Addr(), "-topic", "mcloudtt:bench", "-pubs", "2", "-subs", "2",
		"-n", "2000", "-inflight", "16", "-warmup", "20ms", "-timeout", "20s", "-q"}
	code, s := runTool(t, args...)
	if code != 0 || !s.OK || s.Lost != 0 || s.Acked != 4000 {
		t.Fatalf("over TLS: code %d %+v", code, s)
	}

	pw := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(pw, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOADGEN_REDIS_PASSWORD_FILE", pw)
	code, s = runTool(t, args...)
	if code == 0 || s.OK || !strings.Contains(s.FirstError, "wrong Redis user name or password") {
		t.Fatalf("wrong password: code %d %+v", code, s)
	}

	t.Setenv("LOADGEN_REDIS_TLS", "false")
	code, s = runTool(t, args...)
	if code != 2 || !strings.Contains(s.FirstError, "LOADGEN_REDIS_TLS_CA_FILE") {
		t.Fatalf("CA file without TLS: code %d %+v", code, s)
	}
}
