package devices

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
)

func newKey(t *testing.T) Key {
	t.Helper()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	k, err := ParseKey(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The registry on a real redis-server (with AUTH): keys added up to the maximum and one more
// refused, a key added again only changes its expiry, list and lookup agree, remove of one key,
// of an unknown one and of every key.
func TestRegistry(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPassword("registry-password"))
	rdb, err := Dial([]string{rs.Addr()}, rs.Env())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	reg, ctx := New(rdb, wire.NewNames("")), context.Background()
	a, b, c := newKey(t), newKey(t), newKey(t)
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	if up, err := reg.Add(ctx, "dev", a, time.Time{}, 2); up || err != nil {
		t.Fatal(up, err)
	}
	if up, err := reg.Add(ctx, "dev", b, time.Time{}, 2); up || err != nil {
		t.Fatal(up, err)
	}
	if _, err := reg.Add(ctx, "dev", c, time.Time{}, 2); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("a third key with a maximum of two: %v", err)
	}
	if up, err := reg.Add(ctx, "dev", b, expires, 2); !up || err != nil {
		t.Fatalf("b again: %v %v", up, err)
	}
	list, err := reg.List(ctx, "dev")
	if err != nil || len(list) != 2 {
		t.Fatal(list, err)
	}
	keys, err := reg.DeviceKeys(ctx, "dev")
	if err != nil || len(keys) != 2 {
		t.Fatal(keys, err)
	}
	for _, k := range keys {
		if want := map[string]time.Time{a.ID: {}, b.ID: expires}[k.ID]; !k.Expires.Equal(want) || k.Public == nil {
			t.Errorf("key %s: expires %v, want %v", k.ID, k.Expires, want)
		}
	}
	if n, err := reg.Remove(ctx, "dev", c.ID); n != 0 || err != nil {
		t.Fatalf("remove of a key the device lacks: %d %v", n, err)
	}
	if n, err := reg.Remove(ctx, "dev", a.ID); n != 1 || err != nil {
		t.Fatalf("remove a: %d %v", n, err)
	}
	if n, err := reg.Remove(ctx, "dev", "all"); n != 1 || err != nil {
		t.Fatalf("remove all: %d %v", n, err)
	}
	if keys, err := reg.DeviceKeys(ctx, "dev"); len(keys) != 0 || err != nil {
		t.Fatalf("after removing all: %v %v", keys, err)
	}
	if _, err := reg.Add(ctx, "a b", a, time.Time{}, 2); err == nil {
		t.Fatal("a device id with a space was accepted")
	}
}
