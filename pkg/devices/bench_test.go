package devices

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

// BenchmarkDeviceKeys is the registry lookup of one CONNECT with a token: one HGETALL on a real
// redis-server over loopback, and the keys' PEM parsed (cached) — the price of reading the
// registry at every CONNECT instead of caching it and invalidating the cache over the bus.
func BenchmarkDeviceKeys(b *testing.B) {
	rs := redistest.Start(b)
	rdb, err := Dial([]string{rs.Addr()}, rs.Env())
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	reg := New(rdb, wire.NewNames(""))
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, pub := range []any{&rsaKey.PublicKey, &ecKey.PublicKey} {
		der, _ := x509.MarshalPKIXPublicKey(pub)
		k, err := ParseKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := reg.Add(context.Background(), "dev", k, time.Time{}, 3); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if keys, err := reg.DeviceKeys(ctx, "dev"); err != nil || len(keys) != 2 {
			b.Fatal(len(keys), err)
		}
	}
}
