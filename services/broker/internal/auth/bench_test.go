package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// benchACL is a file of a realistic shape: an anonymous section, 1000 users with five lines each
// (exact topics, wildcards, a deny) and a handful of patterns.
func benchACL(tb testing.TB) *ACL {
	var b strings.Builder
	b.WriteString("topic read public/#\ntopic read $SYS/broker/uptime\n")
	b.WriteString("pattern readwrite devices/%c/#\npattern read users/%u/inbox/#\npattern deny devices/%c/firmware/#\npattern write telemetry/%u/%c\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "user user%d\n", i)
		fmt.Fprintf(&b, "topic readwrite home/user%d/#\n", i)
		fmt.Fprintf(&b, "topic read home/+/shared/user%d\n", i)
		fmt.Fprintf(&b, "topic write alerts/user%d\n", i)
		fmt.Fprintf(&b, "topic read status/user%d\n", i)
		fmt.Fprintf(&b, "topic deny home/user%d/private/#\n", i)
	}
	return mustParseACL(tb, b.String())
}

func BenchmarkACLAllowed(b *testing.B) {
	a := benchACL(b)
	cases := []struct {
		name                  string
		clientID, user, topic string
		access                Access
		want                  bool
	}{
		{"write/exact", "dev7", "user7", "alerts/user7", Write, true},
		{"write/user-wildcard", "dev7", "user7", "home/user7/kitchen/temp", Write, true},
		{"write/pattern-%c", "dev7", "user7", "devices/dev7/status", Write, true},
		{"write/pattern-%u-%c", "dev7", "user7", "telemetry/user7/dev7", Write, true},
		{"write/denied", "dev7", "user7", "home/user8/kitchen/temp", Write, false},
		{"read/user-deny", "dev7", "user7", "home/user7/private/diary", Read, false},
		{"read/anonymous", "dev7", "", "public/weather/now", Read, true},
		{"subscribe/covered", "dev7", "user7", "home/user7/+/temp", Subscribe, true},
		{"subscribe/refused", "dev7", "user7", "home/#", Subscribe, false},
		{"write/pattern-slash-id", "a/b", "user7", "devices/a/b/status", Write, true},
	}
	for _, c := range cases {
		if got := a.Allowed(c.clientID, c.user, c.topic, c.access); got != c.want {
			b.Fatalf("%s: Allowed = %v, want %v", c.name, got, c.want)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.Allowed(c.clientID, c.user, c.topic, c.access)
			}
		})
	}
}

func BenchmarkStoreAllowedParallel(b *testing.B) {
	s := &Store{}
	s.cur.Store(&storeState{acl: benchACL(b)})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Allowed("dev7", "user7", "home/user7/kitchen/temp", Write)
		}
	})
}

func BenchmarkPasswordsCheck(b *testing.B) {
	for _, k := range []struct {
		name string
		kind HashKind
	}{{"pbkdf2-101", PBKDF2}, {"sha512", SHA512}, {"bcrypt-10", Bcrypt}} {
		h, err := HashPassword("pw", k.kind)
		if err != nil {
			b.Fatal(err)
		}
		p := mustParsePasswords(b, "u:"+h+"\n")
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Check("u", []byte("pw"))
			}
		})
	}
}

// BenchmarkJWTVerify is the CPU cost of one token check (parse, signature, claims) with the
// device's keys already at hand: what a CONNECT with a JWT costs besides the registry lookup.
func BenchmarkJWTVerify(b *testing.B) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	reg := keyMap{"rsa": {{ID: "r", Public: &rsaKey.PublicKey}}, "ec": {{ID: "e", Public: &ecKey.PublicKey}}}
	j, err := NewJWT(context.Background(), JWTConfig{Registry: reg, ProjectID: "p", MaxLifetime: 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	claims := claimsFor("p", now, now.Add(time.Hour))
	for _, c := range []struct {
		name, device string
		token        []byte
	}{
		{"RS256", "rsa", sign(b, jwt.SigningMethodRS256, rsaKey, claims)},
		{"ES256", "ec", sign(b, jwt.SigningMethodES256, ecKey, claims)},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := j.Verify(context.Background(), c.device, c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
