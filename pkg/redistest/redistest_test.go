package redistest

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestServerLifecycle(t *testing.T) {
	s := Start(t)
	if r, err := Do(s.Addr(), "", "SET", "k", "v"); err != nil || r != "OK" {
		t.Fatalf("SET: %q %v", r, err)
	}
	if got := s.Info("persistence", "aof_enabled", ""); got != "0" {
		t.Errorf("aof_enabled = %q, want 0", got)
	}
	if r, _ := Do(s.Addr(), "", "CONFIG", "GET", "save"); r != "save\n" {
		t.Errorf("CONFIG GET save = %q, want empty", r)
	}
	if r, _ := Do(s.Addr(), "", "CONFIG", "GET", "bind"); !strings.Contains(r, "127.0.0.1") {
		t.Errorf("bind = %q", r)
	}
	port := s.Port()
	s.Restart()
	if s.Port() != port {
		t.Fatalf("port changed across Restart")
	}
	if r, err := Do(s.Addr(), "", "GET", "k"); err != nil || r != "" {
		t.Fatalf("after restart GET k = %q, %v; want nothing (no persistence)", r, err)
	}
	s.Kill()
	if s.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := Do(s.Addr(), "", "PING"); err == nil {
		t.Fatal("PING answered after Kill")
	}
	s.Start()
	if r, err := Do(s.Addr(), "", "PING"); err != nil || r != "PONG" {
		t.Fatalf("PING after Start: %q %v", r, err)
	}
	s.Stop()
	s.Stop() // idempotent
}

func TestNewDoesNotStart(t *testing.T) {
	s := New(t)
	if _, err := Do(s.Addr(), "", "PING"); err == nil {
		t.Fatal("server answers before Start")
	}
	s.Start()
	if r, err := Do(s.Addr(), "", "PING"); err != nil || r != "PONG" {
		t.Fatalf("PING: %q %v", r, err)
	}
}

func TestPassword(t *testing.T) {
	s := Start(t, WithPassword("sekrit"))
	if _, err := Do(s.Addr(), "", "GET", "x"); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("without AUTH: %v, want NOAUTH", err)
	}
	if r, err := Do(s.Addr(), "sekrit", "PING"); err != nil || r != "PONG" {
		t.Fatalf("with AUTH: %q %v", r, err)
	}
}

func TestCommandCalls(t *testing.T) {
	s := Start(t)
	for i := 0; i < 3; i++ {
		if _, err := Do(s.Addr(), "", "PUBLISH", "ch", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.CommandCalls("publish"); n != 3 {
		t.Fatalf("publish calls = %d, want 3", n)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	if len(c.Addrs()) != 3 {
		t.Fatalf("addrs %v", c.Addrs())
	}
	// A key lands on the node NodeFor names, and the others redirect.
	for _, key := range []string{"a", "b", "{r1}:in", "{r2}:in", "x"} {
		n := c.NodeFor(t, key)
		if r, err := Do(n.Addr(), "", "SET", key, "1"); err != nil || r != "OK" {
			t.Fatalf("SET %s on %s: %q %v", key, n.Addr(), r, err)
		}
		for _, o := range c.Nodes {
			if o == n {
				continue
			}
			if _, err := Do(o.Addr(), "", "SET", key, "1"); err == nil || !strings.HasPrefix(err.Error(), "MOVED") {
				t.Fatalf("SET %s on %s: %v, want MOVED", key, o.Addr(), err)
			}
		}
	}
}

// readLine reads one line from c with a deadline; "" on timeout.
func readLine(t *testing.T, r *bufio.Reader, c net.Conn, wait time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	line, err := r.ReadString('\n')
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return ""
		}
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestProxy(t *testing.T) {
	s := Start(t)
	p := StartProxy(t, s.Addr())
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ping := []byte("PING\r\n")
	c.Write(ping)
	if l := readLine(t, r, c, 2*time.Second); l != "+PONG" {
		t.Fatalf("through proxy: %q", l)
	}

	p.Blackhole()
	if _, err := c.Write(ping); err != nil {
		t.Fatalf("write while black-holed should succeed (half-open): %v", err)
	}
	if l := readLine(t, r, c, 200*time.Millisecond); l != "" {
		t.Fatalf("got %q through a black hole", l)
	}
	// A new connection is accepted but goes nowhere.
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	r2 := bufio.NewReader(c2)
	c2.Write(ping)
	if l := readLine(t, r2, c2, 200*time.Millisecond); l != "" {
		t.Fatalf("new connection got %q through a black hole", l)
	}

	p.Restore()
	if l := readLine(t, r, c, 2*time.Second); l != "+PONG" {
		t.Fatalf("held PING after Restore: %q", l)
	}
	if l := readLine(t, r2, c2, 2*time.Second); l != "+PONG" {
		t.Fatalf("held connection after Restore: %q", l)
	}

	p.Cut()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection survived Cut")
	}
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	c3.Write(ping)
	if l := readLine(t, bufio.NewReader(c3), c3, 2*time.Second); l != "+PONG" {
		t.Fatalf("new connection after Cut: %q", l)
	}
}

// fatalRecorder stands in for a testing.TB to see what Binary reports.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestMissingBinaryPointsAtDeps(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	f := &fatalRecorder{TB: t}
	Binary(f)
	if !strings.Contains(f.msg, "scripts/deps.sh") {
		t.Fatalf("message %q does not point at scripts/deps.sh", f.msg)
	}
}
