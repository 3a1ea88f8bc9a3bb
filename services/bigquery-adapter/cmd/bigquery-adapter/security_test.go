package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// An adapter that does not trust the Redis server's certificate, or whose password is wrong,
// keeps running, is not ready, says why on /readyz and in its log, and keeps retrying.
func TestRedisRefusalKeepsTheAdapterNotReady(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithACLUser("mcloudtt-services", "right"))
	bin := proctest.Build(t, ".")
	wrongPW := t.TempDir() + "/password"
	writeFile(t, wrongPW, "wrong\n")
	for _, c := range []struct {
		name, override, cause string
	}{
		{"untrusted certificate", "ADAPTER_REDIS_TLS_CA_FILE=" + redistest.NewPKI(t).CAFile, "certificate is not trusted"},
		{"wrong password", "ADAPTER_REDIS_PASSWORD_FILE=" + wrongPW, "wrong Redis user name or password"},
	} {
		t.Run(c.name, func(t *testing.T) {
			httpAddr := proctest.FreeAddr(t)
			env := append([]string{"ADAPTER_ID=refused", "ADAPTER_HTTP_ADDR=" + httpAddr, "ADAPTER_LOG_FORMAT=json",
				"ADAPTER_REDIS_ADDRS=" + rs.Addr(), "ADAPTER_BIGQUERY_PROJECT=p",
				"ADAPTER_BIGQUERY_ENDPOINT=http://127.0.0.1:1", "ADAPTER_BIGQUERY_GRPC_ENDPOINT=127.0.0.1:1"}, rs.EnvVars("ADAPTER")...)
			p := proctest.Start(t, bin, append(env, c.override))
			deadline := time.Now().Add(15 * time.Second)
			for {
				body, code := "", 0
				if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					body, code = string(b), resp.StatusCode
				}
				if code == 200 {
					t.Fatal("ready although Redis refuses the adapter")
				}
				if code == 503 && strings.Contains(body, c.cause) && strings.Contains(p.Output(), c.cause) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/readyz %d %q; log:\n%s", code, body, p.Output())
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
