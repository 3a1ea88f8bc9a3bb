// Package redisconn is how every MCloudTT process opens a connection to Redis once it knows the
// address: the Redis 6+ ACL user and password (or a password file, read again for every new
// connection so that a rotated Kubernetes Secret takes effect without a restart), TLS verified
// against a CA file and a server name (Memorystore's server-authentication mode), and an optional
// client certificate. Env holds the environment variables that configure it, so the broker, the
// BigQuery adapter, the health gateway and the load tool spell them once and cannot drift apart.
//
// A connection is TLS or plain TCP as configured, never one falling back to the other: a TLS
// handshake that fails is an error, and so is a CA or client certificate given without TLS.
// Cause turns the errors of a failed connection into the reason an operator can act on (wrong
// password, untrusted certificate, a TLS-only server spoken to in plain text, ...).
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Options say how to log in to Redis and whether to speak TLS. The zero value is plain TCP as the
// default user without a password.
type Options struct {
	// Username is the Redis 6+ ACL user; empty is the default user (AUTH with the password only).
	Username string
	// Password is sent with AUTH (or HELLO). Empty: none, unless PasswordFile is set.
	Password string
	// PasswordFile holds the password (one trailing newline is ignored). It is read for every new
	// connection. Set Password or PasswordFile, not both.
	PasswordFile string
	// TLS, when set, makes every connection TLS; nil means plain TCP.
	TLS *TLS
	// DialTimeout bounds the TCP connect and, separately, the TLS handshake. Default 5s.
	DialTimeout time.Duration
}

// TLS configures TLS to Redis.
type TLS struct {
	// CAFile holds the PEM certificates of the CAs that may sign the server's certificate
	// (Memorystore's server CA). Empty: the system's roots.
	CAFile string
	// ServerName is the name (DNS name or IP address) the server's certificate must be valid for.
	// Empty: the host of the address dialled.
	ServerName string
	// CertFile and KeyFile are an optional client certificate and its key (PEM), for a Redis that
	// verifies clients (tls-auth-clients).
	CertFile, KeyFile string
}

// Validate checks the options without reading files; errors name the field.
func (o Options) Validate() error {
	if o.Password != "" && o.PasswordFile != "" {
		return errors.New("redisconn: Password and PasswordFile are both set; use one")
	}
	if o.DialTimeout < 0 {
		return fmt.Errorf("redisconn: DialTimeout is negative (%v)", o.DialTimeout)
	}
	if t := o.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("redisconn: TLS.CertFile and TLS.KeyFile go together")
	}
	return nil
}

// Connector opens connections to Redis with Options. It is safe for concurrent use.
type Connector struct {
	o Options

	mu sync.Mutex // guards what follows: the TLS material, reloaded when its files change
	tc *tls.Config
	// stamps of the files tc was built from, to notice a change (Kubernetes swaps Secret files).
	stamps []fileStamp
}

type fileStamp struct {
	path string
	mod  time.Time
	size int64
}

// DefaultDialTimeout is Options.DialTimeout's default.
const DefaultDialTimeout = 5 * time.Second

// New checks the options and reads every file once (password, CA, client certificate), so a file
// that is missing or malformed stops the process at start rather than at its first connection.
func New(o Options) (*Connector, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	c := &Connector{o: o}
	if o.PasswordFile != "" {
		if _, err := readPassword(o.PasswordFile); err != nil {
			return nil, err
		}
	}
	if o.TLS != nil {
		if _, err := c.tlsConfig(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// TLS reports whether connections are TLS.
func (c *Connector) TLS() bool { return c.o.TLS != nil }

// Options returns the options in force (defaults applied).
func (c *Connector) Options() Options { return c.o }

// Credentials returns the user name and password for AUTH, reading the password file if one is
// configured. Its signature is go-redis' CredentialsProviderContext.
func (c *Connector) Credentials(context.Context) (username, password string, err error) {
	if c.o.PasswordFile == "" {
		return c.o.Username, c.o.Password, nil
	}
	p, err := readPassword(c.o.PasswordFile)
	if err != nil {
		return "", "", err
	}
	return c.o.Username, p, nil
}

// HasCredentials reports whether AUTH is sent at all (a user name or a password is configured).
func (c *Connector) HasCredentials() bool {
	return c.o.Username != "" || c.o.Password != "" || c.o.PasswordFile != ""
}

func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("redis password file: %w", err)
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", fmt.Errorf("redis password file %s is empty", path)
	}
	return p, nil
}

// Dial opens a connection to addr: TCP, then the TLS handshake when TLS is configured. Its
// signature is go-redis' Dialer. Errors say which step failed and why (see Cause).
func (c *Connector) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: c.o.DialTimeout, KeepAlive: 15 * time.Second}
	nc, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if c.o.TLS == nil {
		return nc, nil
	}
	base, err := c.tlsConfig()
	if err != nil {
		nc.Close()
		return nil, err
	}
	conf := base.Clone()
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("redis TLS: address %q: %w", addr, err)
		}
		conf.ServerName = host
	}
	// The chain and the name are checked in VerifyConnection instead of by crypto/tls, the same way
	// plus one case crypto/tls no longer accepts; see verifyServer.
	roots, name := conf.RootCAs, conf.ServerName
	conf.InsecureSkipVerify = true
	conf.VerifyConnection = func(cs tls.ConnectionState) error { return verifyServer(cs, roots, name) }
	hctx, cancel := context.WithTimeout(ctx, c.o.DialTimeout)
	defer cancel()
	tc := tls.Client(nc, conf)
	if err := tc.HandshakeContext(hctx); err != nil {
		nc.Close()
		return nil, &HandshakeError{Addr: addr, ServerName: conf.ServerName, Err: err}
	}
	return tc, nil
}

// HandshakeError is a failed TLS handshake with Redis.
type HandshakeError struct {
	Addr, ServerName string
	Err              error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("redis TLS handshake with %s (server name %q): %v", e.Addr, e.ServerName, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// tlsConfig returns the TLS configuration, built again when one of its files changed since.
func (c *Connector) tlsConfig() (*tls.Config, error) {
	t := c.o.TLS
	paths := []string{t.CAFile, t.CertFile, t.KeyFile}
	stamps := make([]fileStamp, 0, len(paths))
	for _, p := range paths {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("redis TLS: %w", err)
		}
		stamps = append(stamps, fileStamp{p, fi.ModTime(), fi.Size()})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tc != nil && sameStamps(stamps, c.stamps) {
		return c.tc, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := LoadCAFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis TLS client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	c.tc, c.stamps = conf, stamps
	return conf, nil
}

func sameStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].path != b[i].path || !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// LoadCAFile reads PEM certificates into a pool; a file without one is an error.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("redis TLS CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("redis TLS CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// verifyServer checks the server's certificate as crypto/tls would (a chain to roots, nil meaning
// the system's, for server authentication; then the name) with one addition: a certificate that
// has no subject alternative names at all is matched on its common name. Memorystore's server
// certificates are such: the instance's IP address is their common name, which Go, unlike OpenSSL
// clients such as redis-cli, has ignored since Go 1.15. Only a certificate that chains to the
// configured CA gets this far, and a certificate with alternative names is never matched on its
// common name.
func verifyServer(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("redis TLS: the server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	err := leaf.VerifyHostname(name)
	if err == nil || (!hasSANs(leaf) && commonNameIs(leaf.Subject.CommonName, name)) {
		return nil
	}
	return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
}

func hasSANs(c *x509.Certificate) bool {
	return len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses)+len(c.URIs) > 0
}

// commonNameIs compares a common name with the expected server name: IP addresses as addresses,
// DNS names without regard to case. No wildcards.
func commonNameIs(cn, name string) bool {
	if cn == "" {
		return false
	}
	if ip := net.ParseIP(name); ip != nil {
		return ip.Equal(net.ParseIP(cn))
	}
	return strings.EqualFold(strings.TrimSuffix(cn, "."), strings.TrimSuffix(name, "."))
}
