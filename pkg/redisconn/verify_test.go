package redisconn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Google Cloud Memorystore Redis Server CA (test)"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, file: file}
}

// serve runs a TLS server on loopback with a certificate for cn (and the given SANs) until the
// test ends; it completes handshakes and nothing more.
func (ca *testCA) serve(t *testing.T, cn string, dns []string, ips []net.IP) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: dns, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				time.Sleep(100 * time.Millisecond)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// Memorystore's server certificates carry the instance's IP address as their common name and no
// subject alternative names; Go alone refuses them. A certificate of that shape from the configured
// CA is accepted for exactly that address; a different address, a certificate with alternative
// names that do not match (whatever its common name), or one from another CA is refused.
func TestCommonNameOnlyCertificates(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	dial := func(caFile, addr, serverName string) error {
		c, err := redisconn.New(redisconn.Options{TLS: &redisconn.TLS{CAFile: caFile, ServerName: serverName}, DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		nc, err := c.Dial(context.Background(), "tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err
	}
	legacy := ca.serve(t, "127.0.0.1", nil, nil)
	if err := dial(ca.file, legacy, ""); err != nil {
		t.Fatalf("CN-only certificate for the dialled IP: %v", err)
	}
	if err := dial(ca.file, legacy, "10.30.0.3"); err == nil || !strings.Contains(redisconn.Cause(err, true), "not valid for the TLS server name") {
		t.Fatalf("CN-only certificate for another IP: %v", err)
	}
	if err := dial(other.file, legacy, ""); err == nil || !strings.Contains(redisconn.Cause(err, true), "not trusted") {
		t.Fatalf("CN-only certificate from an untrusted CA: %v", err)
	}
	withSAN := ca.serve(t, "127.0.0.1", []string{"redis.example.com"}, nil)
	if err := dial(ca.file, withSAN, ""); err == nil || !strings.Contains(redisconn.Cause(err, true), "not valid for the TLS server name") {
		t.Fatalf("a certificate with other SANs matched on its CN: %v", err)
	}
	if err := dial(ca.file, withSAN, "redis.example.com"); err != nil {
		t.Fatalf("SAN match: %v", err)
	}
	named := ca.serve(t, "Redis.Example.com", nil, nil)
	if err := dial(ca.file, named, "redis.example.COM"); err != nil {
		t.Fatalf("CN-only DNS name, other case: %v", err)
	}
	if err := dial(ca.file, named, "example.com"); err == nil {
		t.Fatal("CN-only DNS name matched another name")
	}
}
