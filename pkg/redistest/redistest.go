// Package redistest runs real redis-server processes for tests: a single server (Start), a Redis
// Cluster (StartCluster), and a TCP proxy that can cut or black-hole the link to one
// (StartProxy), so tests see Redis restarts and network partitions without root.
//
// Everything listens on 127.0.0.1 only, keeps no data on disk (no RDB, no AOF, a temporary
// directory of its own) and is stopped by t.Cleanup. redis-server must be on PATH
// (scripts/deps.sh installs it); a missing binary fails the test rather than skipping it, so CI
// cannot pass without running these tests.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long a server may take to answer PING after being started.
const StartTimeout = 10 * time.Second

// Server is one redis-server process on a fixed loopback port, which survives Stop and Restart.
type Server struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	args []string
	pass string

	mu   sync.Mutex // guards what follows
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer   // the server's log, for failure messages
}

type config struct {
	args     []string
	password string
	cluster  bool
}

// Option configures a Server.
type Option func(*config)

// WithArgs adds redis-server command-line options ("--maxmemory", "10mb", ...).
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// WithPassword makes the server require AUTH with password.
func WithPassword(password string) Option {
	return func(c *config) { c.password = password }
}

// Binary returns the path of redis-server, or fails t with a pointer to scripts/deps.sh.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server not found on PATH (%v): run scripts/deps.sh "+
			"(or apt-get install redis-server) — these tests need a real Redis", err)
	}
	return bin
}

// New prepares a server on a free loopback port without starting it (so a test can start Redis
// after its client). Start it with (*Server).Start.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), pass: c.password}
	s.port = freePort(t, c.cluster)
	s.args = []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--loglevel", "notice", "--logfile", "",
	}
	if c.password != "" {
		s.args = append(s.args, "--requirepass", c.password)
	}
	if c.cluster {
		s.args = append(s.args, "--cluster-enabled", "yes",
			"--cluster-config-file", s.dir+"/nodes.conf", "--cluster-node-timeout", "2000")
	}
	s.args = append(s.args, c.args...)
	t.Cleanup(s.Kill)
	return s
}

// Start starts a redis-server and waits until it answers PING. The server is killed when the
// test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := New(t, opts...)
	s.Start()
	return s
}

// Addr returns "127.0.0.1:port".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port returns the server's port.
func (s *Server) Port() int { return s.port }

// Password returns the password the server requires ("" for none).
func (s *Server) Password() string { return s.pass }

// Log returns what the server has written to its log so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Start starts the server (again) on its port and waits until it answers PING. It fails the test
// if the server is already running or does not come up within StartTimeout.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatalf("redistest: server on %s already running", s.Addr())
	}
	out := &syncBuffer{}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		s.t.Fatalf("redistest: starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done, s.out = cmd, done, out
	s.mu.Unlock()

	deadline := time.Now().Add(StartTimeout)
	for {
		reply, err := Do(s.Addr(), s.pass, "PING")
		if err == nil && reply == "PONG" {
			return
		}
		select {
		case <-done:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			s.t.Fatalf("redistest: redis-server on %s exited at start:\n%s", s.Addr(), out.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: redis-server on %s not answering PING after %v (%v):\n%s",
				s.Addr(), StartTimeout, err, out.String())
		}
	}
}

// Stop shuts the server down with SIGTERM and waits for it to exit (SIGKILL after 5 s). A
// stopped server can be started again with Start.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

// Kill kills the server with SIGKILL and waits for it to exit: a crash.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

// Restart stops the server and starts it again on the same port; its data is gone (no
// persistence).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.Start()
}

// Running reports whether the process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// freePort returns a loopback port that was free a moment ago. For a cluster node the port
// 10000 above (the cluster bus) must be free too.
func freePort(t testing.TB, cluster bool) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: no free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if !cluster {
			ln.Close()
			return port
		}
		if port+10000 > 65535 {
			ln.Close()
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		ln.Close()
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("redistest: no free port pair for a cluster node")
	return 0
}

// Do sends one command to the server at addr on a fresh connection (after AUTH when password is
// set) and returns the reply: a status or bulk string as is, an integer in decimal, an array's
// elements joined by newlines. An error reply is returned as an error. It is for test set-up, not
// for speed.
func Do(addr, password string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var cmd []byte
	if password != "" {
		cmd = appendCommand(cmd, "AUTH", password)
	}
	cmd = appendCommand(cmd, args...)
	if _, err := c.Write(cmd); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	if password != "" {
		if _, err := readReply(r); err != nil {
			return "", fmt.Errorf("AUTH: %w", err)
		}
	}
	return readReply(r)
}

func appendCommand(dst []byte, args ...string) []byte {
	dst = fmt.Appendf(dst, "*%d\r\n", len(args))
	for _, a := range args {
		dst = fmt.Appendf(dst, "$%d\r\n%s\r\n", len(a), a)
	}
	return dst
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		if n < 0 {
			return "", nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// Info returns one field of INFO section (as "calls" of "cmdstat_publish" in commandstats, or a
// plain "field:value" line when sub is ""). It fails the test on error.
func (s *Server) Info(section, field, sub string) string {
	s.t.Helper()
	info, err := Do(s.Addr(), s.pass, "INFO", section)
	if err != nil {
		s.t.Fatalf("redistest: INFO %s: %v", section, err)
	}
	return InfoField(info, field, sub)
}

// InfoField picks field (and, for "a=1,b=2" values, its sub-field) out of INFO output; "" when
// absent.
func InfoField(info, field, sub string) string {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != field {
			continue
		}
		if sub == "" {
			return v
		}
		for _, kv := range strings.Split(v, ",") {
			if sk, sv, ok := strings.Cut(kv, "="); ok && sk == sub {
				return sv
			}
		}
	}
	return ""
}

// CommandCalls returns how many times the server ran command (lowercase, "publish") since it
// started or since CONFIG RESETSTAT.
func (s *Server) CommandCalls(command string) int {
	s.t.Helper()
	n, _ := strconv.Atoi(s.Info("commandstats", "cmdstat_"+command, "calls"))
	return n
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
