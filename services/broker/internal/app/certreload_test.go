package app

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// SIGHUP makes new TLS handshakes use the certificate now in the files, without a restart.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	p := newPKI(t)
	a := serve(t, func(c *config.Config) {
		c.TLSAddr = "127.0.0.1:0"
		c.TLSCertFile, c.TLSKeyFile = p.certFile, p.keyFile
		c.CertReloadInterval = 0 // SIGHUP only
	})
	serial := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", a.TLS, &tls.Config{RootCAs: p.pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	cert, key := p.issue(t, "localhost", true)
	kb, _ := x509.MarshalECPrivateKey(key)
	p.write(t, "server.pem.new", "CERTIFICATE", cert.Certificate[0])
	p.write(t, "server.key.new", "EC PRIVATE KEY", kb)
	if err := os.Rename(p.certFile+".new", p.certFile); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p.keyFile+".new", p.keyFile); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != before {
		t.Fatalf("certificate changed before SIGHUP: %s -> %s", before, got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for serial() == before {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
