package broker_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The Debian mosquitto-clients tools interoperate with the broker (installed by scripts/deps.sh).
func mosquittoTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not installed (run scripts/deps.sh): %v", name, err)
	}
	return p
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func TestMosquittoClientsInterop(t *testing.T) {
	b := startBroker(t)
	sub, pub := mosquittoTool(t, "mosquitto_sub"), mosquittoTool(t, "mosquitto_pub")
	host, port := hostPort(t, b.Addr)
	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			topic := "interop/" + v
			var out bytes.Buffer
			s := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-q", "2", "-t", topic+"/#", "-C", "3", "-v", "-i", "msub-"+v)
			s.Stdout = &out
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return b.Server.Stats().Clients >= 1 })
			time.Sleep(200 * time.Millisecond) // let the SUBSCRIBE land
			for _, q := range []string{"0", "1", "2"} {
				cmd := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", v, "-q", q, "-t", topic+"/q"+q, "-m", "hello "+q)
				if o, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("mosquitto_pub -q %s: %v %s", q, err, o)
				}
			}
			if err := s.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v (%s)", err, out.String())
			}
			for _, q := range []string{"0", "1", "2"} {
				if !strings.Contains(out.String(), topic+"/q"+q+" hello "+q) {
					t.Fatalf("missing qos %s message in %q", q, out.String())
				}
			}

			// Retained: published first, received by a later subscriber.
			if o, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", v, "-r", "-q", "1", "-t", topic+"/ret", "-m", "kept").CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, o)
			}
			o, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-t", topic+"/ret", "-C", "1", "-W", "5", "-v").Output()
			if err != nil || !strings.Contains(string(o), topic+"/ret kept") {
				t.Fatalf("retained: %v %q", err, o)
			}

			// Will: a mosquitto_sub killed without DISCONNECT leaves its will.
			var wout bytes.Buffer
			w := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-t", topic+"/will", "-C", "1", "-W", "10", "-v")
			w.Stdout = &wout
			if err := w.Start(); err != nil {
				t.Fatal(err)
			}
			dying := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", v, "-t", "nothing", "-i", "dying-"+v,
				"--will-topic", topic+"/will", "--will-payload", "gone", "--will-qos", "1")
			if err := dying.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			_ = dying.Process.Kill()
			_ = dying.Wait()
			if err := w.Wait(); err != nil || !strings.Contains(wout.String(), topic+"/will gone") {
				t.Fatalf("will: %v %q", err, wout.String())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
