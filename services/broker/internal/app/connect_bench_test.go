package app

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// benchDevices is how many devices the JWT rows connect as, in turn (each its own client id, so
// connections do not take sessions over from each other).
const benchDevices = 256

// BenchmarkConnect is the CONNECT rate, from dial to CONNACK (then DISCONNECT and close), of one
// replica in a cluster (Redis: every CONNECT claims its client id there) for each way to
// authenticate: JWT RS256 and ES256 from the device registry (one HGETALL and a signature check
// per CONNECT), the password file (PBKDF2-SHA512, mosquitto_passwd's 101 iterations), and
// anonymous. ns/op over the parallel clients is the inverse rate; conns/s says it directly.
//
//	go test -run '^$' -bench BenchmarkConnect -benchtime 3000x ./services/broker/internal/app
func BenchmarkConnect(b *testing.B) {
	rs := redistest.Start(b)
	reg := registry(b, rs)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	claims := deviceClaims(testProject, now, now.Add(23*time.Hour))
	var rsaToks, ecToks [benchDevices]string
	for i := range benchDevices {
		addKey(b, reg, fmt.Sprintf("rsa-%d", i), &rsaKey.PublicKey, time.Time{})
		addKey(b, reg, fmt.Sprintf("ec-%d", i), &ecKey.PublicKey, time.Time{})
		rsaToks[i] = signToken(b, jwt.SigningMethodRS256, rsaKey, claims)
		ecToks[i] = signToken(b, jwt.SigningMethodES256, ecKey, claims)
	}
	hash, err := auth.HashPassword("bench-password", auth.PBKDF2)
	if err != nil {
		b.Fatal(err)
	}
	pwFile := filepath.Join(b.TempDir(), "passwords")
	if err := os.WriteFile(pwFile, []byte("bench:"+hash+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	addr := benchBroker(b, func(c *config.Config) {
		c.RedisAddrs, c.Env, c.PasswordFile = []string{rs.Addr()}, rs.Env(), pwFile
		c.JWTEnabled, c.JWTRegistry, c.JWTProjectID = true, true, testProject
	})
	for _, row := range []struct {
		name string
		cred func(i int) benchCred
	}{
		{"jwt-rs256", func(i int) benchCred {
			return benchCred{fmt.Sprintf("rsa-%d", i%benchDevices), "unused", rsaToks[i%benchDevices]}
		}},
		{"jwt-es256", func(i int) benchCred {
			return benchCred{fmt.Sprintf("ec-%d", i%benchDevices), "unused", ecToks[i%benchDevices]}
		}},
		{"password-pbkdf2", func(i int) benchCred {
			return benchCred{fmt.Sprintf("pw-%d", i%benchDevices), "bench", "bench-password"}
		}},
		{"anonymous", func(i int) benchCred { return benchCred{fmt.Sprintf("anon-%d", i%benchDevices), "", ""} }},
	} {
		b.Run(row.name, func(b *testing.B) {
			// Every row connects as benchDevices client ids in turn; each has connected once
			// before the clock starts, so no row pays for first connections.
			for i := range benchDevices {
				if err := connectOnce(addr, row.cred(i)); err != nil {
					b.Fatal(err)
				}
			}
			var n atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := connectOnce(addr, row.cred(int(n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// benchCred is what one benchmark connection sends.
type benchCred struct{ id, user, password string }

// connectOnce dials, sends a 3.1.1 CONNECT, reads the CONNACK, and disconnects.
func connectOnce(addr string, c benchCred) error {
	conn, _, err := dialConnect(addr, c, 4096)
	if err != nil {
		return err
	}
	defer conn.Close()
	out, _ := (&mqtt.Disconnect{}).AppendTo(nil, mqtt.V311)
	_, err = conn.Write(out)
	return err
}

// dialConnect dials, sends a 3.1.1 CONNECT as c and returns the connection and a reader (with a
// buffer of bufSize bytes) past a successful CONNACK; on any error the connection is closed.
func dialConnect(addr string, c benchCred, bufSize int) (net.Conn, *mqtt.Reader, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	p := &mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V311, KeepAlive: 30, CleanStart: true, ClientID: c.id}
	if c.user != "" {
		p.Username, p.UsernameFlag, p.Password, p.PasswordFlag = c.user, true, []byte(c.password), true
	}
	out, err := p.AppendTo(nil, mqtt.V311)
	if err == nil {
		_, err = conn.Write(out)
	}
	var pk mqtt.Packet
	rd := mqtt.NewReader(bufio.NewReaderSize(conn, bufSize), 0)
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		rd.SetVersion(mqtt.V311)
		pk, err = rd.ReadPacket()
		_ = conn.SetReadDeadline(time.Time{})
	}
	if ack, ok := pk.(*mqtt.Connack); err == nil && (!ok || ack.ReasonCode != 0) {
		err = fmt.Errorf("client %s: CONNACK %+v", c.id, pk)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, rd, nil
}

// benchBroker starts a broker replica, quiet, for a benchmark.
func benchBroker(b *testing.B, mod func(*config.Config)) string {
	cfg := config.Default()
	cfg.MQTTAddr, cfg.HTTPAddr, cfg.SysInterval = "127.0.0.1:0", "127.0.0.1:0", 0
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, zerolog.Nop(), func(a Addrs) { addrs <- a }) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addrs:
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if resp, err := http.Get("http://" + a.HTTP + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return a.MQTT
				}
			}
		}
		b.Fatal("broker never ready")
	case err := <-done:
		b.Fatalf("serve: %v", err)
	case <-time.After(10 * time.Second):
		b.Fatal("broker did not start")
	}
	return ""
}
