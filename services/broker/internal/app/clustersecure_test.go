package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redisconn"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// secureRedis is a Redis as production runs it: TLS only (certificates made for the test), a
// password for the default user, and an ACL user for the brokers that may use only the mcloudtt:*
// keys and channels and no dangerous command. Server.Env gives the brokers that user, its password
// in a file, and TLS verified against the test CA.
func secureRedis(t *testing.T) *redistest.Server {
	return redistest.Start(t, redistest.WithTLS(), redistest.WithPassword("default-user-secret"),
		redistest.WithACLUser("mcloudtt-broker", "broker-secret"))
}

// The cluster tests pass unchanged over TLS as a restricted ACL user: cross-replica delivery,
// retained messages (the hash, and a late replica loading it), takeover and session resume.
func TestClusterOverTLSWithACLUser(t *testing.T) {
	t.Run("cross-replica delivery", func(t *testing.T) { clusterCrossReplicaDelivery(t, secureRedis(t)) })
	t.Run("retained", func(t *testing.T) { clusterRetained(t, secureRedis(t)) })
	t.Run("takeover and session resume", func(t *testing.T) { clusterTakeoverAndSessionResume(t, secureRedis(t)) })
}

// A replica that Redis refuses (a wrong password, a certificate from a CA it does not trust, plain
// TCP to a TLS-only Redis) keeps running, stays not ready, names the cause in its log, and keeps
// retrying: once the password file holds the right password it joins, without a restart.
func TestReplicaRefusedByRedisSaysWhyAndRetries(t *testing.T) {
	rs := secureRedis(t)
	good := rs.Env()
	wrongPW := filepath.Join(t.TempDir(), "password")
	writeFile(t, wrongPW, "not-the-password\n")
	for _, c := range []struct {
		name  string
		env   func() redisconn.Env
		cause string
		fix   func()
	}{
		{"wrong password", func() redisconn.Env { e := good; e.RedisPasswordFile = wrongPW; return e },
			"wrong Redis user name or password", func() {
				b, err := os.ReadFile(good.RedisPasswordFile)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, wrongPW, string(b))
			}},
		{"untrusted server certificate", func() redisconn.Env {
			e := good
			e.RedisTLSCAFile = redistest.NewPKI(t).CAFile
			return e
		}, "the Redis server's certificate is not trusted", nil},
		{"plain TCP to a TLS-only Redis", func() redisconn.Env {
			e := good
			e.RedisTLS, e.RedisTLSCAFile, e.RedisTLSCertFile, e.RedisTLSKeyFile = false, "", "", ""
			return e
		}, "only speaks TLS", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, logs := serveLogged(t, func(cfg *config.Config) {
				cfg.ID = "replica-refused"
				cfg.HTTPAddr = "127.0.0.1:0"
				cfg.RedisAddrs = []string{rs.Addr()}
				cfg.Env = c.env()
				cfg.ExportFilters = nil
			})
			deadline := time.Now().Add(10 * time.Second)
			for strings.Count(logs.String(), c.cause) < 2 { // refused, and refused again on retry
				if time.Now().After(deadline) {
					t.Fatalf("no log line naming %q:\n%s", c.cause, logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if code, _ := get(t, "http://"+a.HTTP+"/readyz"); code != 503 {
				t.Fatalf("/readyz %d while Redis refuses the replica", code)
			}
			if c.fix == nil {
				return
			}
			c.fix()
			for {
				if code, _ := get(t, "http://"+a.HTTP+"/readyz"); code == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not ready after the password file was fixed:\n%s", logs)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
