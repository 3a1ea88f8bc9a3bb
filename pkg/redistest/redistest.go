// Package redistest runs real redis-server processes for tests: a single server (Start), a Redis
// Cluster (StartCluster), and a TCP proxy that can cut or black-hole the link to one
// (StartProxy), so tests see Redis restarts and network partitions without root.
//
// A server may speak TLS only (WithTLS, WithTLSClientAuth: certificates made in the test by NewPKI),
// require a password (WithPassword) and have a restricted ACL user (WithACLUser); Server.Conn and
// Server.Env are what its clients then need.
//
// Everything listens on 127.0.0.1 only, keeps no data on disk (no RDB, no AOF, a temporary
// directory of its own) and is stopped by t.Cleanup. redis-server must be on PATH
// (scripts/deps.sh installs it); a missing binary fails the test rather than skipping it, so CI
// cannot pass without running these tests.
package redistest

import (
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
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
	pki  *PKI   // set: the server speaks TLS only
	user string // an ACL user (WithACLUser), and its password
	upw  string

	mu   sync.Mutex // guards what follows
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer   // the server's log, for failure messages
}

type config struct {
	args          []string
	password      string
	cluster       bool
	tls           bool
	tlsClientAuth bool
	user, userPW  string
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

// WithTLS makes the server speak TLS only (no plain-text port), with a certificate for 127.0.0.1
// and localhost from a CA made for it (Server.PKI). Clients need not present a certificate.
func WithTLS() Option {
	return func(c *config) { c.tls = true }
}

// WithTLSClientAuth is WithTLS, and clients must present a certificate signed by the same CA.
func WithTLSClientAuth() Option {
	return func(c *config) { c.tls, c.tlsClientAuth = true, true }
}

// WithACLUser adds a Redis ACL user with password that may use only MCloudTT's keys and channels
// (those starting with "mcloudtt:") and no dangerous command (FLUSHALL, CONFIG, KEYS, DEBUG, ...):
// what a production deployment gives its services. Server.Conn and Server.Env log in as this user.
func WithACLUser(user, password string) Option {
	return func(c *config) { c.user, c.userPW = user, password }
}

// ACLRules are the rules WithACLUser gives its user.
var ACLRules = []string{"~mcloudtt:*", "&mcloudtt:*", "+@all", "-@dangerous"}

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
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir(), pass: c.password, user: c.user, upw: c.userPW}
	s.port = freePort(t, c.cluster)
	s.args = []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--loglevel", "notice", "--logfile", "",
	}
	if c.tls {
		s.pki = NewPKI(t)
		auth := "no"
		if c.tlsClientAuth {
			auth = "yes"
		}
		s.args = append(s.args[:0], "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.pki.CertFile, "--tls-key-file", s.pki.KeyFile,
			"--tls-ca-cert-file", s.pki.CAFile, "--tls-auth-clients", auth)
		s.args = append(s.args, "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir,
			"--daemonize", "no", "--loglevel", "notice", "--logfile", "")
	}
	if c.password != "" {
		s.args = append(s.args, "--requirepass", c.password)
	}
	if c.user != "" {
		s.args = append(s.args, "--user", c.user, "on", ">"+c.userPW)
		s.args = append(s.args, ACLRules...)
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

// PKI returns the certificates of a WithTLS server (nil without TLS).
func (s *Server) PKI() *PKI { return s.pki }

// Conn returns the connection options a client of this server needs: the ACL user of WithACLUser
// (else the default user with the WithPassword password) and, for a WithTLS server, TLS verified
// against its CA (and the client certificate, for WithTLSClientAuth).
func (s *Server) Conn() redisconn.Options {
	o := redisconn.Options{Username: s.user, Password: s.upw}
	if s.user == "" {
		o.Password = s.pass
	}
	if s.pki != nil {
		o.TLS = &redisconn.TLS{CAFile: s.pki.CAFile, CertFile: s.pki.ClientCertFile, KeyFile: s.pki.ClientKeyFile}
	}
	return o
}

// Env returns Conn as environment settings, for a service's config struct. The password is in a
// file (REDIS_PASSWORD_FILE), as in Kubernetes.
func (s *Server) Env() redisconn.Env {
	o := s.Conn()
	e := redisconn.Env{RedisUsername: o.Username}
	if o.Password != "" {
		e.RedisPasswordFile = filepath.Join(s.dir, "client-password")
		if err := os.WriteFile(e.RedisPasswordFile, []byte(o.Password+"\n"), 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	if o.TLS != nil {
		e.RedisTLS, e.RedisTLSCAFile = true, o.TLS.CAFile
		e.RedisTLSCertFile, e.RedisTLSKeyFile = o.TLS.CertFile, o.TLS.KeyFile
	}
	return e
}

// EnvVars returns Env as environment variables under prefix ("BROKER" gives BROKER_REDIS_TLS=true
// and so on), for a service started as a process. Only the variables that are set are listed.
func (s *Server) EnvVars(prefix string) []string {
	e := s.Env()
	var out []string
	add := func(name, v string) {
		if v != "" {
			out = append(out, prefix+"_"+name+"="+v)
		}
	}
	add("REDIS_USERNAME", e.RedisUsername)
	add("REDIS_PASSWORD_FILE", e.RedisPasswordFile)
	if e.RedisTLS {
		add("REDIS_TLS", "true")
	}
	add("REDIS_TLS_CA_FILE", e.RedisTLSCAFile)
	add("REDIS_TLS_CERT_FILE", e.RedisTLSCertFile)
	add("REDIS_TLS_KEY_FILE", e.RedisTLSKeyFile)
	return out
}

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
		reply, err := s.Do("PING")
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

// freePort returns a loopback port that was free a moment ago and that no other helper of this test
// process handed out (proctest.FreePort). For a cluster node the port 10000 above (the cluster bus)
// must be free too.
func freePort(t testing.TB, cluster bool) int {
	t.Helper()
	for range 100 {
		port := proctest.FreePort(t)
		if !cluster {
			return port
		}
		if port+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return port
	}
	t.Fatal("redistest: no free port pair for a cluster node")
	return 0
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
