package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// BenchmarkPublishAfterAuth is the QoS 0 publish rate, end to end to one subscriber, of
// publishers that authenticated with a registry JWT (ES256) and of anonymous ones, on one replica
// with JWT authentication on: a token is checked at CONNECT only, so the rates should match. The
// rows run in the order anonymous, JWT, JWT, anonymous (Go names the repeats #01), because the
// earlier rows of a process run a few percent slower even after their warm-up.
//
//	go test -run '^$' -bench BenchmarkPublishAfterAuth -benchtime 200000x ./services/broker/internal/app
func BenchmarkPublishAfterAuth(b *testing.B) {
	rs := redistest.Start(b)
	reg := registry(b, rs)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	const pubs = 4
	var toks [pubs]string
	for i := range pubs {
		addKey(b, reg, fmt.Sprintf("pub-%d", i), &key.PublicKey, time.Time{})
		toks[i] = signToken(b, jwt.SigningMethodES256, key, deviceClaims(testProject, now, now.Add(23*time.Hour)))
	}
	addr := benchBroker(b, func(c *config.Config) {
		c.RedisAddrs, c.Env = []string{rs.Addr()}, rs.Env()
		c.JWTEnabled, c.JWTRegistry, c.JWTProjectID = true, true, testProject
	})
	for _, row := range []struct {
		name string
		cred func(i int) benchCred
	}{
		{"anonymous", func(i int) benchCred { return benchCred{fmt.Sprintf("anon-%d", i), "", ""} }},
		{"jwt-es256", func(i int) benchCred { return benchCred{fmt.Sprintf("pub-%d", i), "unused", toks[i]} }},
		{"jwt-es256", func(i int) benchCred { return benchCred{fmt.Sprintf("pub-%d", i), "unused", toks[i]} }},
		{"anonymous", func(i int) benchCred { return benchCred{fmt.Sprintf("anon-%d", i), "", ""} }},
	} {
		b.Run(row.name, func(b *testing.B) {
			sub, subRd := benchConn(b, addr, benchCred{id: "bench-sub-" + row.name})
			benchSubscribe(b, sub, subRd, "bench/#")
			conns := make([]net.Conn, pubs)
			for i := range conns {
				conns[i], _ = benchConn(b, addr, row.cred(i))
			}
			// The first row of a process would otherwise pay for the heap's growth: each row
			// warms up with the same traffic before the clock starts.
			pump(b, conns, subRd, 100_000)
			b.SetBytes(benchPayload)
			b.ResetTimer()
			pump(b, conns, subRd, b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

const benchPayload = 64

// pump sends n QoS 0 PUBLISHes of benchPayload bytes spread over conns, in 32 KiB writes, and
// returns once the subscriber behind subRd has received them all.
func pump(b *testing.B, conns []net.Conn, subRd *mqtt.Reader, n int) {
	payload := make([]byte, benchPayload)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &mqtt.Publish{Topic: fmt.Sprintf("bench/%d", i), Payload: payload}
			pk, _ := p.AppendTo(nil, mqtt.V311)
			var buf []byte
			for k := i; k < n; k += len(conns) {
				if buf = append(buf, pk...); len(buf) >= 32<<10 {
					if _, err := c.Write(buf); err != nil {
						b.Error(err)
						return
					}
					buf = buf[:0]
				}
			}
			if _, err := c.Write(buf); err != nil {
				b.Error(err)
			}
		}()
	}
	for got := 0; got < n; got++ {
		if _, err := subRd.ReadPacket(); err != nil {
			b.Fatalf("subscriber after %d of %d: %v", got, n, err)
		}
	}
	wg.Wait()
}

// benchConn connects as c (3.1.1) and returns the connection and a reader past its CONNACK.
func benchConn(b *testing.B, addr string, c benchCred) (net.Conn, *mqtt.Reader) {
	b.Helper()
	conn, rd, err := dialConnect(addr, c, 64<<10)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return conn, rd
}

// benchSubscribe subscribes conn to filter at QoS 0 and waits for the SUBACK.
func benchSubscribe(b *testing.B, conn net.Conn, rd *mqtt.Reader, filter string) {
	b.Helper()
	out, _ := (&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: filter}}}).AppendTo(nil, mqtt.V311)
	if _, err := conn.Write(out); err != nil {
		b.Fatal(err)
	}
	if pk, err := rd.ReadPacket(); err != nil {
		b.Fatal(err)
	} else if _, ok := pk.(*mqtt.Suback); !ok {
		b.Fatalf("want SUBACK, got %+v", pk)
	}
}
