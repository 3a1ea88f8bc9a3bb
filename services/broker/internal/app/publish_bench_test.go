package app

import (
	"bufio"
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
// with JWT authentication on: a token is checked at CONNECT only, so the rates should match.
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
			payload := make([]byte, 64)
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := &mqtt.Publish{Topic: fmt.Sprintf("bench/%d", i), Payload: payload}
					pk, _ := p.AppendTo(nil, mqtt.V311)
					var buf []byte
					for n := i; n < b.N; n += pubs {
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
			for got := 0; got < b.N; got++ {
				if _, err := subRd.ReadPacket(); err != nil {
					b.Fatalf("subscriber after %d of %d: %v", got, b.N, err)
				}
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// benchConn connects as c (3.1.1) and returns the connection and a reader past its CONNACK.
func benchConn(b *testing.B, addr string, c benchCred) (net.Conn, *mqtt.Reader) {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	p := &mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V311, KeepAlive: 0, CleanStart: true, ClientID: c.id}
	if c.user != "" {
		p.Username, p.UsernameFlag, p.Password, p.PasswordFlag = c.user, true, []byte(c.password), true
	}
	out, _ := p.AppendTo(nil, mqtt.V311)
	if _, err := conn.Write(out); err != nil {
		b.Fatal(err)
	}
	rd := mqtt.NewReader(bufio.NewReaderSize(conn, 64<<10), 0)
	rd.SetVersion(mqtt.V311)
	if pk, err := rd.ReadPacket(); err != nil {
		b.Fatal(err)
	} else if ack, ok := pk.(*mqtt.Connack); !ok || ack.ReasonCode != 0 {
		b.Fatalf("client %s: CONNACK %+v", c.id, pk)
	}
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
