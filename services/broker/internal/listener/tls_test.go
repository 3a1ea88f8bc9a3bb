package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveTLS serves TLS with certs on a loopback port until the test ends. Each connection shakes
// hands, then gets one line "cn=<PeerCommonName>" and is closed.
func serveTLS(t *testing.T, certs *Certs) string {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := TLS(tcp, certs)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				cn, _ := PeerCommonName(c)
				_, _ = c.Write([]byte("cn=" + cn + "\n"))
			}()
		}
	}()
	return ln.Addr().String()
}

// tryTLS connects and returns the server's line and the connection's state. A refused client
// certificate shows up here too: in TLS 1.3 the client's handshake ends before the server has
// checked it, and the refusal arrives as an alert on the first read.
func tryTLS(addr string, cfg *tls.Config) (string, tls.ConnectionState, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", c.ConnectionState(), err
	}
	return strings.TrimSuffix(line, "\n"), c.ConnectionState(), nil
}

// clientConfig trusts ca for the server and presents cert, if given, whatever CAs the server
// says it accepts (a Go client left to choose would not send a certificate of another CA at all).
func clientConfig(ca *testCA, cert ...tls.Certificate) *tls.Config {
	cfg := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost"}
	if len(cert) > 0 {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert[0], nil }
	}
	return cfg
}

// serialSeen is the serial number of the certificate a new handshake gets.
func serialSeen(t *testing.T, addr string, ca *testCA) int64 {
	t.Helper()
	_, st, err := tryTLS(addr, clientConfig(ca))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return st.PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	o := serverFiles(t, t.TempDir(), ca, 1)
	o.ClientCAFile = ""
	certs, err := LoadCerts(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := certs.Leaf().SerialNumber.Int64(); got != 1 {
		t.Fatalf("Leaf serial = %d", got)
	}
	addr := serveTLS(t, certs)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientConfig(ca)
		cfg.MaxVersion = v
		line, st, err := tryTLS(addr, cfg)
		if err != nil {
			t.Fatalf("%s: %v", tls.VersionName(v), err)
		}
		if line != "cn=" || st.Version != v || st.PeerCertificates[0].SerialNumber.Int64() != 1 {
			t.Fatalf("%s: line %q, version %s, serial %v", tls.VersionName(v), line, tls.VersionName(st.Version), st.PeerCertificates[0].SerialNumber)
		}
	}
}

func TestTLSRefusesBelow12(t *testing.T) {
	ca := newTestCA(t, "ca")
	certs, err := LoadCerts(serverFiles(t, t.TempDir(), ca, 1))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certs)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		cfg := clientConfig(ca)
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, v
		if _, _, err := tryTLS(addr, cfg); err == nil {
			t.Fatalf("%s client was served", tls.VersionName(v))
		}
	}
}

func TestTLSClientCertificates(t *testing.T) {
	ca := newTestCA(t, "ca")
	other := newTestCA(t, "other ca")
	good := ca.clientCert(t, "device-1")
	stranger := other.clientCert(t, "device-1")
	for _, require := range []bool{true, false} {
		o := serverFiles(t, t.TempDir(), ca, 1)
		o.RequireClientCert = require
		certs, err := LoadCerts(o)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, certs)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			name := func(s string) string { return tls.VersionName(v) + " " + s }
			cfg := func(c ...tls.Certificate) *tls.Config {
				cfg := clientConfig(ca, c...)
				cfg.MaxVersion = v
				return cfg
			}
			line, _, err := tryTLS(addr, cfg())
			switch {
			case require && err == nil:
				t.Errorf("%s: a client without a certificate was served", name("required"))
			case !require && (err != nil || line != "cn="):
				t.Errorf("%s: a client without a certificate got %q, %v", name("optional"), line, err)
			}
			if line, _, err := tryTLS(addr, cfg(good)); err != nil || line != "cn=device-1" {
				t.Errorf("%s: CA-signed client got %q, %v; want cn=device-1", name("any"), line, err)
			}
			if line, _, err := tryTLS(addr, cfg(stranger)); err == nil {
				t.Errorf("%s: client signed by another CA was served: %q", name("any"), line)
			}
		}
	}
}

// PeerCommonName on a connection straight from Accept runs the handshake itself.
func TestPeerCommonNameRunsHandshake(t *testing.T) {
	ca := newTestCA(t, "ca")
	o := serverFiles(t, t.TempDir(), ca, 1)
	o.RequireClientCert = true
	certs, err := LoadCerts(o)
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := TLS(tcp, certs)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), clientConfig(ca, ca.clientCert(t, "sensor-42")))
		if err == nil {
			_, err = c.Read(make([]byte, 1)) // until the server closes
			c.Close()
		}
		done <- err
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	cn, ok := PeerCommonName(c)
	if !ok || cn != "sensor-42" {
		t.Fatalf("PeerCommonName = %q, %v", cn, ok)
	}
	if tc, ok := UnwrapTLS(c); !ok || tc != c {
		t.Fatal("UnwrapTLS did not return the *tls.Conn itself")
	}
	c.Close()
	<-done

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := PeerCommonName(a); ok {
		t.Fatal("PeerCommonName true for a connection without TLS")
	}
}

// A client that connects and says nothing holds up neither Accept nor anybody else, and the
// connection's read deadline ends its handshake.
func TestTLSSilentClient(t *testing.T) {
	ca := newTestCA(t, "ca")
	certs, err := LoadCerts(serverFiles(t, t.TempDir(), ca, 1))
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := TLS(tcp, certs)
	defer ln.Close()
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	first := waitConn(t, accepted)
	defer first.Close()

	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), clientConfig(ca))
		if err == nil {
			_, _ = c.Write([]byte("x"))
			c.Close()
		}
	}()
	second := waitConn(t, accepted)
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); err != nil {
		t.Fatalf("second client, accepted after a silent one: %v", err)
	}

	// The broker sets its CONNECT deadline before the first read; the handshake is under it.
	_ = first.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	_, err = first.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("silent client's read: %v; want a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the deadline took %v", d)
	}
	if _, ok := PeerCommonName(first); ok {
		t.Fatal("PeerCommonName true after a failed handshake")
	}
}

func waitConn(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

func TestLoadCertsErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	o := serverFiles(t, dir, ca, 1)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "other.key")
	_, k := ca.issue(t, "x", 9, true)
	if err := os.WriteFile(otherKey, k, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		edit func(*TLSOptions)
		want string
	}{
		{"no cert", func(o *TLSOptions) { o.CertFile = "" }, "CertFile"},
		{"no key", func(o *TLSOptions) { o.KeyFile = "" }, "KeyFile"},
		{"required without CA", func(o *TLSOptions) { o.ClientCAFile, o.RequireClientCert = "", true }, "ClientCAFile"},
		{"missing cert", func(o *TLSOptions) { o.CertFile = missing }, missing},
		{"missing key", func(o *TLSOptions) { o.KeyFile = missing }, missing},
		{"missing CA", func(o *TLSOptions) { o.ClientCAFile = missing }, missing},
		{"garbage cert", func(o *TLSOptions) { o.CertFile = garbage }, garbage},
		{"garbage key", func(o *TLSOptions) { o.KeyFile = garbage }, garbage},
		{"garbage CA", func(o *TLSOptions) { o.ClientCAFile = garbage }, garbage},
		{"key of another cert", func(o *TLSOptions) { o.KeyFile = otherKey }, otherKey},
	} {
		oo := o
		tc.edit(&oo)
		_, err := LoadCerts(oo)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want one naming %s", tc.name, err, tc.want)
		}
	}
}

func TestCertsReload(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	certs, err := LoadCerts(serverFiles(t, dir, ca, 1))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certs)
	if got := serialSeen(t, addr, ca); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	serverFiles(t, dir, ca, 2)
	if got := serialSeen(t, addr, ca); got != 1 {
		t.Fatalf("serial %d before Reload, want 1", got)
	}
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := serialSeen(t, addr, ca); got != 2 {
		t.Fatalf("serial %d after Reload, want 2", got)
	}
	replaceFile(t, filepath.Join(dir, "tls.crt"), []byte("broken"))
	if err := certs.Reload(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tls.crt")) {
		t.Fatalf("Reload of a broken certificate: %v", err)
	}
	if got := serialSeen(t, addr, ca); got != 2 {
		t.Fatalf("serial %d after a failed Reload, want the old 2", got)
	}
}

// The client CA pool is reloaded too: rotating the CA file switches which clients get in.
func TestCertsReloadClientCA(t *testing.T) {
	dir := t.TempDir()
	ca, next := newTestCA(t, "ca"), newTestCA(t, "next ca")
	o := serverFiles(t, dir, ca, 1)
	o.RequireClientCert = true
	certs, err := LoadCerts(o)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certs)
	oldClient, newClient := ca.clientCert(t, "old"), next.clientCert(t, "new")
	if line, _, err := tryTLS(addr, clientConfig(ca, oldClient)); err != nil || line != "cn=old" {
		t.Fatalf("old client before rotation: %q, %v", line, err)
	}
	replaceFile(t, o.ClientCAFile, next.pem)
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tryTLS(addr, clientConfig(ca, oldClient)); err == nil {
		t.Fatal("client of the retired CA still served")
	}
	if line, _, err := tryTLS(addr, clientConfig(ca, newClient)); err != nil || line != "cn=new" {
		t.Fatalf("client of the new CA: %q, %v", line, err)
	}
}

// Watch sees both ways certificates are replaced in practice and keeps the old certificate when
// the new files are broken.
func TestCertsWatch(t *testing.T) {
	ca := newTestCA(t, "ca")

	// install puts serial's certificate in place and returns the options pointing at it.
	type layout struct {
		name    string
		install func(t *testing.T, dir string, serial int64, broken bool) TLSOptions
	}
	// Files renamed over the old ones one by one: a poll between the certificate and its key sees
	// a mismatched pair, fails, and succeeds once the key is in place too.
	rename := func(t *testing.T, dir string, serial int64, broken bool) TLSOptions {
		switch {
		case serial == 1:
			return serverFiles(t, dir, ca, serial)
		case broken:
			replaceFile(t, filepath.Join(dir, "tls.crt"), []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
		default:
			// Key first, certificate last, so the last change Watch sees is the complete pair.
			c, k := ca.issue(t, "localhost", serial, true)
			replaceFile(t, filepath.Join(dir, "tls.key"), k)
			replaceFile(t, filepath.Join(dir, "tls.crt"), c)
		}
		return TLSOptions{}
	}
	// The Kubernetes Secret volume: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>; an
	// update writes a new timestamped directory and renames a new ..data symlink over the old.
	k8s := func(t *testing.T, dir string, serial int64, broken bool) TLSOptions {
		gen := filepath.Join(dir, "..gen"+string(rune('0'+serial)))
		if err := os.Mkdir(gen, 0o755); err != nil {
			t.Fatal(err)
		}
		serverFiles(t, gen, ca, serial)
		if broken {
			replaceFile(t, filepath.Join(gen, "tls.crt"), []byte("broken"))
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(gen), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		o := TLSOptions{}
		for _, f := range []struct {
			name string
			dst  *string
		}{{"tls.crt", &o.CertFile}, {"tls.key", &o.KeyFile}, {"ca.crt", &o.ClientCAFile}} {
			*f.dst = filepath.Join(dir, f.name)
			if _, err := os.Lstat(*f.dst); err != nil {
				if err := os.Symlink(filepath.Join("..data", f.name), *f.dst); err != nil {
					t.Fatal(err)
				}
			}
		}
		return o
	}
	for _, l := range []layout{{"rename", rename}, {"kubernetes symlink swap", k8s}} {
		t.Run(l.name, func(t *testing.T) {
			dir := t.TempDir()
			certs, err := LoadCerts(l.install(t, dir, 1, false))
			if err != nil {
				t.Fatal(err)
			}
			addr := serveTLS(t, certs)
			reloads := make(chan error, 10)
			ctx, cancel := context.WithCancel(context.Background())
			watching := make(chan struct{})
			go func() {
				defer close(watching)
				certs.Watch(ctx, 5*time.Millisecond, func(err error) { reloads <- err })
			}()
			defer func() { cancel(); <-watching }()
			next := func() error {
				t.Helper()
				select {
				case err := <-reloads:
					return err
				case <-time.After(5 * time.Second):
					t.Fatal("Watch did not reload")
					return nil
				}
			}
			// nextOK waits for a successful reload; failures on the way are the half-replaced
			// pair described above.
			nextOK := func() {
				t.Helper()
				for {
					err := next()
					if err == nil {
						return
					}
					t.Logf("transient reload failure: %v", err)
				}
			}

			l.install(t, dir, 2, false)
			nextOK()
			if got := serialSeen(t, addr, ca); got != 2 {
				t.Fatalf("serial %d after reload, want 2", got)
			}

			l.install(t, dir, 3, true)
			if err := next(); err == nil || !strings.Contains(err.Error(), "tls.crt") {
				t.Fatalf("reload of a broken certificate reported %v", err)
			}
			if got := serialSeen(t, addr, ca); got != 2 {
				t.Fatalf("serial %d after a broken update, want the old 2", got)
			}
			// A failed reload is reported once, not on every tick.
			select {
			case err := <-reloads:
				t.Fatalf("unchanged files reloaded again: %v", err)
			case <-time.After(50 * time.Millisecond):
			}

			l.install(t, dir, 4, false)
			nextOK()
			if got := serialSeen(t, addr, ca); got != 4 {
				t.Fatalf("serial %d after the fix, want 4", got)
			}
		})
	}
}

// A client whose certificate was verified against a CA that has since been rotated out must not
// get back in by resuming its TLS session: the handshake config comes from GetConfigForClient,
// and resumption has to be checked against the client CAs current then, not those of the
// original handshake.
func TestCertsReloadClientCAWithResumption(t *testing.T) {
	dir := t.TempDir()
	ca, next := newTestCA(t, "ca"), newTestCA(t, "next ca")
	o := serverFiles(t, dir, ca, 1)
	o.RequireClientCert = true
	certs, err := LoadCerts(o)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certs)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := clientConfig(ca, ca.clientCert(t, "old"))
		cfg.MaxVersion = v
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		if line, _, err := tryTLS(addr, cfg); err != nil || line != "cn=old" {
			t.Fatalf("%s: first connection: %q, %v", tls.VersionName(v), line, err)
		}
		if _, st, err := tryTLS(addr, cfg); err != nil || !st.DidResume {
			t.Fatalf("%s: the session was not resumed before rotation (%v), so this test proves nothing", tls.VersionName(v), err)
		}
		replaceFile(t, o.ClientCAFile, next.pem)
		if err := certs.Reload(); err != nil {
			t.Fatal(err)
		}
		if line, st, err := tryTLS(addr, cfg); err == nil {
			t.Fatalf("%s: client of the retired CA got back in (resumed %v): %q", tls.VersionName(v), st.DidResume, line)
		}
		replaceFile(t, o.ClientCAFile, ca.pem)
		if err := certs.Reload(); err != nil {
			t.Fatal(err)
		}
	}
}
