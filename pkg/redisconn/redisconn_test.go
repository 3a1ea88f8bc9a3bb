package redisconn_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// client is a go-redis client on addr that connects through c, as the services' clients do.
func client(t *testing.T, c *redisconn.Connector, addr string) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true}
	c.Client(o)
	rc := redis.NewClient(o)
	t.Cleanup(func() { rc.Close() })
	return rc
}

func connector(t *testing.T, o redisconn.Options) *redisconn.Connector {
	t.Helper()
	c, err := redisconn.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ping(c *redis.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// A TLS-only Redis with requirepass and an ACL user: the user logs in over verified TLS, uses the
// mcloudtt:* keys and channels and nothing else, and dangerous commands are refused.
func TestTLSAndACLUser(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword("admin-secret"),
		redistest.WithACLUser("mcloudtt", "app-secret"))
	c := connector(t, rs.Conn())
	if !c.TLS() || !c.HasCredentials() {
		t.Fatalf("TLS %v, credentials %v", c.TLS(), c.HasCredentials())
	}
	rc := client(t, c, rs.Addr())
	ctx := context.Background()
	if err := rc.Set(ctx, "mcloudtt:k", "v", 0).Err(); err != nil {
		t.Fatalf("SET as the ACL user over TLS: %v", err)
	}
	if who, err := rc.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || who != "mcloudtt" {
		t.Fatalf("ACL WHOAMI: %q %v", who, err)
	}
	for _, cmd := range [][]any{{"SET", "other:k", "v"}, {"FLUSHALL"}, {"CONFIG", "GET", "requirepass"}, {"PUBLISH", "other", "x"}} {
		err := rc.Do(ctx, cmd...).Err()
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%v as the restricted user: %v, want NOPERM", cmd, err)
			continue
		}
		if cause := redisconn.Cause(err, true); !strings.Contains(cause, "Redis ACL") {
			t.Errorf("cause of %v: %q", err, cause)
		}
	}
	if n, err := rc.Publish(ctx, "mcloudtt:ch", "x").Result(); err != nil || n != 0 {
		t.Fatalf("PUBLISH on an allowed channel: %d %v", n, err)
	}
}

func TestWrongPasswordNamesTheCause(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithACLUser("mcloudtt", "right"))
	o := rs.Conn()
	o.Password = "wrong"
	c := connector(t, o)
	err := ping(client(t, c, rs.Addr()))
	if err == nil {
		t.Fatal("PING with a wrong password succeeded")
	}
	if got := c.Explain(err).Error(); !strings.HasPrefix(got, "wrong Redis user name or password: ") {
		t.Fatalf("explained: %q", got)
	}

	// Without any password, a Redis with requirepass answers NOAUTH.
	rs2 := redistest.Start(t, redistest.WithPassword("right"))
	c2 := connector(t, redisconn.Options{})
	err = ping(client(t, c2, rs2.Addr()))
	if cause := redisconn.Cause(err, false); !strings.Contains(cause, "requires a password") {
		t.Fatalf("no password: %v, cause %q", err, cause)
	}
}

// A server certificate from a CA the client does not trust is refused in the handshake, and the
// error says so; so is one that is not valid for the server name.
func TestUntrustedServerCertificate(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLS())
	other := redistest.NewPKI(t)
	o := rs.Conn()
	o.TLS.CAFile = other.CAFile
	c := connector(t, o)
	_, err := c.Dial(context.Background(), "tcp", rs.Addr())
	var hs *redisconn.HandshakeError
	if !errors.As(err, &hs) {
		t.Fatalf("dial with an untrusted CA: %v", err)
	}
	if cause := redisconn.Cause(err, true); !strings.Contains(cause, "not trusted") {
		t.Fatalf("cause %q of %v", cause, err)
	}
	if err := ping(client(t, c, rs.Addr())); err == nil || !strings.Contains(c.Explain(err).Error(), "not trusted") {
		t.Fatalf("go-redis through the connector: %v", err)
	}

	o = rs.Conn()
	o.TLS.ServerName = "redis.example.com"
	_, err = connector(t, o).Dial(context.Background(), "tcp", rs.Addr())
	if cause := redisconn.Cause(err, true); !strings.Contains(cause, "not valid for the TLS server name") {
		t.Fatalf("wrong server name: %v, cause %q", err, cause)
	}

	// The certificate's own names verify: localhost as well as the address's IP.
	o = rs.Conn()
	o.TLS.ServerName = "localhost"
	if err := ping(client(t, connector(t, o), rs.Addr())); err != nil {
		t.Fatalf("server name localhost: %v", err)
	}
}

// Plain TCP to a Redis that only speaks TLS fails (Redis closes the connection), and TLS to a
// plain-text Redis fails in the handshake: neither falls back to the other.
func TestNoFallbackBetweenTLSAndPlainText(t *testing.T) {
	tlsOnly := redistest.Start(t, redistest.WithTLS())
	plain := connector(t, redisconn.Options{})
	err := ping(client(t, plain, tlsOnly.Addr()))
	if err == nil {
		t.Fatal("plain TCP to a TLS-only Redis answered PING")
	}
	if cause := redisconn.Cause(err, false); !strings.Contains(cause, "only speaks TLS") {
		t.Fatalf("plain to TLS-only: %v, cause %q", err, cause)
	}

	// A plain-text Redis reads the ClientHello as the start of an inline command and waits for
	// the rest: the handshake times out.
	plainRedis := redistest.Start(t)
	o := tlsOnly.Conn()
	o.DialTimeout = 500 * time.Millisecond
	c := connector(t, o)
	_, err = c.Dial(context.Background(), "tcp", plainRedis.Addr())
	if err == nil {
		t.Fatal("TLS handshake with a plain-text Redis succeeded")
	}
	if cause := redisconn.Cause(err, true); !strings.Contains(cause, "may not speak TLS") {
		t.Fatalf("TLS to plain: %v, cause %q", err, cause)
	}
}

// A Redis that requires client certificates refuses a client without one, and takes the one the
// options name.
func TestClientCertificate(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLSClientAuth())
	o := rs.Conn()
	if err := ping(client(t, connector(t, o), rs.Addr())); err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	o.TLS.CertFile, o.TLS.KeyFile = "", ""
	c := connector(t, o)
	err := ping(client(t, c, rs.Addr()))
	if err == nil {
		t.Fatal("no client certificate, yet PING answered")
	}
	if cause := redisconn.Cause(err, true); cause == "" {
		t.Fatalf("no cause for %v", err)
	}
}

// The password file is read for every new connection: after the password changes in Redis and in
// the file, new connections log in without a restart.
func TestPasswordFileIsReadPerConnection(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPassword("admin"), redistest.WithACLUser("mcloudtt", "one"))
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := connector(t, redisconn.Options{Username: "mcloudtt", PasswordFile: file})
	if err := ping(client(t, c, rs.Addr())); err != nil {
		t.Fatalf("first password: %v", err)
	}
	if _, err := rs.Do("ACL", "SETUSER", "mcloudtt", "resetpass", ">two"); err != nil {
		t.Fatal(err)
	}
	if err := ping(client(t, c, rs.Addr())); err == nil {
		t.Fatal("the old password still logs in")
	}
	if err := os.WriteFile(file, []byte("two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ping(client(t, c, rs.Addr())); err != nil {
		t.Fatalf("rotated password: %v", err)
	}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := ping(client(t, c, rs.Addr()))
	if cause := redisconn.Cause(err, false); !strings.Contains(cause, "password file") {
		t.Fatalf("empty password file: %v, cause %q", err, cause)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		o    redisconn.Options
		want string
	}{
		{redisconn.Options{Password: "a", PasswordFile: "/f"}, "PasswordFile"},
		{redisconn.Options{TLS: &redisconn.TLS{CertFile: "c"}}, "KeyFile"},
		{redisconn.Options{DialTimeout: -1}, "DialTimeout"},
		{redisconn.Options{PasswordFile: "/nonexistent/password"}, "password file"},
		{redisconn.Options{TLS: &redisconn.TLS{CAFile: "/nonexistent/ca.crt"}}, "nonexistent"},
	} {
		if _, err := redisconn.New(c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.o, err, c.want)
		}
	}
}

// Env's validation names the variable at fault and refuses TLS files without TLS, which would
// otherwise mean plain text.
func TestEnvValidate(t *testing.T) {
	pki := redistest.NewPKI(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	notPEM := filepath.Join(dir, "not.pem")
	pw := filepath.Join(dir, "pw")
	for f, b := range map[string]string{empty: "", notPEM: "hello", pw: "secret\n"} {
		if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		e    redisconn.Env
		want string
	}{
		{redisconn.Env{RedisPassword: "a", RedisPasswordFile: pw}, "BROKER_REDIS_PASSWORD_FILE"},
		{redisconn.Env{RedisPasswordFile: empty}, "BROKER_REDIS_PASSWORD_FILE"},
		{redisconn.Env{RedisPasswordFile: filepath.Join(dir, "missing")}, "BROKER_REDIS_PASSWORD_FILE"},
		{redisconn.Env{RedisTLSCAFile: pki.CAFile}, "BROKER_REDIS_TLS_CA_FILE: set, but BROKER_REDIS_TLS is not true"},
		{redisconn.Env{RedisTLSServerName: "x"}, "BROKER_REDIS_TLS_SERVER_NAME"},
		{redisconn.Env{RedisTLSCertFile: pki.ClientCertFile, RedisTLSKeyFile: pki.ClientKeyFile}, "BROKER_REDIS_TLS_CERT_FILE"},
		{redisconn.Env{RedisTLS: true, RedisTLSCertFile: pki.ClientCertFile}, "BROKER_REDIS_TLS_KEY_FILE"},
		{redisconn.Env{RedisTLS: true, RedisTLSCAFile: notPEM}, "BROKER_REDIS_TLS_CA_FILE"},
		{redisconn.Env{RedisTLS: true, RedisTLSCertFile: pki.ClientCertFile, RedisTLSKeyFile: pki.KeyFile}, "BROKER_REDIS_TLS_CERT_FILE"},
	} {
		if err := c.e.Validate("BROKER"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.e, err, c.want)
		}
	}
	ok := redisconn.Env{RedisUsername: "u", RedisPasswordFile: pw, RedisTLS: true, RedisTLSCAFile: pki.CAFile,
		RedisTLSCertFile: pki.ClientCertFile, RedisTLSKeyFile: pki.ClientKeyFile}
	if err := ok.Validate("BROKER"); err != nil {
		t.Fatal(err)
	}
	if d := ok.Describe(); strings.Contains(d, "secret") || !strings.Contains(d, "TLS verified against "+pki.CAFile) {
		t.Fatalf("describe: %q", d)
	}
	o := ok.Options()
	if o.TLS == nil || o.TLS.CAFile != pki.CAFile || o.PasswordFile != pw || o.Username != "u" {
		t.Fatalf("options %+v", o)
	}
	if (redisconn.Env{RedisTLSServerName: ""}).Options().TLS != nil {
		t.Fatal("TLS without REDIS_TLS")
	}
}

func TestLoadEnv(t *testing.T) {
	t.Setenv("LOADGEN_REDIS_USERNAME", "bench")
	t.Setenv("LOADGEN_REDIS_TLS_CA_FILE", "/x")
	if _, err := redisconn.LoadEnv("LOADGEN"); err == nil || !strings.Contains(err.Error(), "LOADGEN_REDIS_TLS_CA_FILE") {
		t.Fatalf("LoadEnv: %v", err)
	}
	t.Setenv("LOADGEN_REDIS_TLS_CA_FILE", "")
	e, err := redisconn.LoadEnv("LOADGEN")
	if err != nil || e.RedisUsername != "bench" {
		t.Fatalf("LoadEnv: %+v %v", e, err)
	}
}
