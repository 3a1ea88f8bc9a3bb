package devices

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// devicesCmd runs `broker devices args...` against rs, with stdin, and returns the exit code and
// output.
func devicesCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := RunDevices(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), strings.ReplaceAll(strings.ToLower(typ), " ", "-")+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func useRedis(t *testing.T, rs *redistest.Server) {
	t.Setenv("BROKER_REDIS_ADDRS", rs.Addr())
	for _, kv := range rs.EnvVars("BROKER") {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// add, list and remove against a real Redis (with AUTH), as an operator runs them; private keys,
// weak keys and a fourth key are refused with a clear error.
func TestDevicesCommand(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPassword("s3cret"))
	useRedis(t, rs)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaFile := writePEM(t, "PUBLIC KEY", rsaDER)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dev-1"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	certDER, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	certFile := writePEM(t, "CERTIFICATE", certDER)

	code, out, errOut := devicesCmd(t, "", "add", rsaFile, "dev-1")
	if code != 1 || !strings.Contains(errOut, "open dev-1") {
		t.Fatalf("arguments swapped: %d %q %q", code, out, errOut)
	}
	if code, out, errOut = devicesCmd(t, "", "add", "dev-1", rsaFile); code != 0 || !strings.Contains(out, "added RSA_PEM key") {
		t.Fatalf("add RSA: %d %q %q", code, out, errOut)
	}
	certPEM, _ := os.ReadFile(certFile)
	if code, out, errOut = devicesCmd(t, string(certPEM), "add", "-expires", "2030-01-02T03:04:05Z", "dev-1", "-"); code != 0 ||
		!strings.Contains(out, "added ES256_X509_PEM key") || !strings.Contains(out, "expires 2030-01-02T03:04:05Z") {
		t.Fatalf("add certificate from stdin: %d %q %q", code, out, errOut)
	}
	code, out, errOut = devicesCmd(t, "", "list", "dev-1")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.Contains(out, "RSA_PEM") || !strings.Contains(out, "ES256_X509_PEM added") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	var rsaID string
	for _, l := range lines {
		if f := strings.Fields(l); f[1] == "RSA_PEM" {
			rsaID = f[0]
		}
	}

	// Private keys: refused, whatever their encoding, and nothing is stored.
	ecPriv, _ := x509.MarshalECPrivateKey(ecKey)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	for typ, der := range map[string][]byte{"EC PRIVATE KEY": ecPriv, "PRIVATE KEY": pkcs8,
		"RSA PRIVATE KEY": x509.MarshalPKCS1PrivateKey(rsaKey)} {
		code, out, errOut := devicesCmd(t, "", "add", "dev-2", writePEM(t, typ, der))
		if code != 1 || !strings.Contains(errOut, "PRIVATE key") || strings.Contains(errOut+out, "MII") {
			t.Fatalf("%s: %d %q %q", typ, code, out, errOut)
		}
	}
	if _, out, _ := devicesCmd(t, "", "list", "dev-2"); out != "" {
		t.Fatalf("a refused key was stored: %q", out)
	}
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakDER, _ := x509.MarshalPKIXPublicKey(&weak.PublicKey)
	if code, _, errOut := devicesCmd(t, "", "add", "dev-2", writePEM(t, "PUBLIC KEY", weakDER)); code != 1 || !strings.Contains(errOut, "2048") {
		t.Fatalf("1024-bit RSA: %d %q", code, errOut)
	}

	// The limit: BROKER_JWT_MAX_KEYS.
	t.Setenv("BROKER_JWT_MAX_KEYS", "2")
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherDER, _ := x509.MarshalPKIXPublicKey(&other.PublicKey)
	if code, _, errOut := devicesCmd(t, "", "add", "dev-1", writePEM(t, "PUBLIC KEY", otherDER)); code != 1 || !strings.Contains(errOut, "maximum number of keys") {
		t.Fatalf("third key with a limit of 2: %d %q", code, errOut)
	}

	if code, out, errOut = devicesCmd(t, "", "remove", "dev-1", rsaID); code != 0 || !strings.Contains(out, "removed 1") {
		t.Fatalf("remove: %d %q %q", code, out, errOut)
	}
	if code, _, errOut = devicesCmd(t, "", "remove", "dev-1", rsaID); code != 1 || !strings.Contains(errOut, "has no key") {
		t.Fatalf("remove again: %d %q", code, errOut)
	}
	if _, out, _ = devicesCmd(t, "", "list", "dev-1"); strings.Contains(out, rsaID) || !strings.Contains(out, "ES256_X509_PEM") {
		t.Fatalf("list after remove: %q", out)
	}
	if code, out, _ = devicesCmd(t, "", "remove", "dev-1", "all"); code != 0 || !strings.Contains(out, "removed 1") {
		t.Fatalf("remove all: %d %q", code, out)
	}
	if code, _, errOut = devicesCmd(t, "", "frobnicate", "dev-1"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
}

func TestDevicesCommandNeedsRedis(t *testing.T) {
	t.Setenv("BROKER_REDIS_ADDRS", "")
	if code, _, errOut := devicesCmd(t, "", "list", "dev-1"); code != 1 || !strings.Contains(errOut, "BROKER_REDIS_ADDRS") {
		t.Fatalf("%d %q", code, errOut)
	}
}
