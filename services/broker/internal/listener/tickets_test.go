package listener

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two replicas with the same ticket key file: a session made at one resumes at the other. Without
// the file each process has its own keys, and the client must shake hands in full at the other.
func TestTicketKeysSharedByReplicas(t *testing.T) {
	ca := newTestCA(t, "ca")
	o := serverFiles(t, t.TempDir(), ca, 1)
	o.ClientCAFile = ""
	replicas := func(o TLSOptions) (string, string) {
		a, err := LoadCerts(o)
		if err != nil {
			t.Fatal(err)
		}
		b, err := LoadCerts(o)
		if err != nil {
			t.Fatal(err)
		}
		return serveTLS(t, a), serveTLS(t, b)
	}
	resumedAtOther := func(a, b string) bool {
		cfg := clientConfig(ca)
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		if _, st, err := tryTLS(a, cfg); err != nil || st.DidResume {
			t.Fatalf("first handshake: resumed %v, %v", st.DidResume, err)
		}
		_, st, err := tryTLS(b, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return st.DidResume
	}
	a, b := replicas(o)
	if resumedAtOther(a, b) {
		t.Fatal("resumed at another replica without shared ticket keys")
	}
	o.TicketKeyFile = filepath.Join(t.TempDir(), "tickets")
	writeKeys(t, o.TicketKeyFile, 2)
	a, b = replicas(o)
	if !resumedAtOther(a, b) {
		t.Fatal("a session from one replica did not resume at the other with shared ticket keys")
	}
}

func TestTicketKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":   "# no key yet\n\n",
		"short":   base64.StdEncoding.EncodeToString(make([]byte, 16)) + "\n",
		"garbage": "not base64 at all\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadTicketKeys(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v; want an error naming the file", name, err)
		}
		if name != "empty" && (err == nil || !strings.Contains(err.Error(), "line 1")) {
			t.Errorf("%s: %v; want the line", name, err)
		}
	}
	path := filepath.Join(dir, "ok")
	writeKeys(t, path, 3)
	keys, err := loadTicketKeys(path)
	if err != nil || len(keys) != 3 {
		t.Fatalf("%d keys, %v", len(keys), err)
	}
}

func writeKeys(t *testing.T, path string, n int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# newest first\n")
	for range n {
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}
