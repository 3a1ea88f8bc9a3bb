package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// idp is an identity provider's JWKS endpoint over HTTPS, whose key set the test changes.
type idp struct {
	srv    *httptest.Server
	caFile string
	mu     sync.Mutex
	keys   []map[string]string
	hits   int
}

func newIDP(t *testing.T) *idp {
	p := &idp{}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.hits++
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	}))
	t.Cleanup(p.srv.Close)
	p.caFile = filepath.Join(t.TempDir(), "idp-ca.pem")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// publish replaces the key set with these public keys (by kid).
func (p *idp) publish(keys map[string]any) {
	var set []map[string]string
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set = append(set, map[string]string{"kty": "RSA", "kid": kid, "use": "sig",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PublicKey:
			x, y := make([]byte, 32), make([]byte, 32)
			k.X.FillBytes(x)
			k.Y.FillBytes(y)
			set = append(set, map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(x), "y": b64(y)})
		}
	}
	p.mu.Lock()
	p.keys, p.hits = set, 0
	p.mu.Unlock()
}

func (p *idp) fetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// idpToken is a token of the provider, signed by key under kid.
func idpToken(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Tokens of an identity provider whose JWKS the broker fetches over HTTPS (trusting the
// provider's CA): the configured claim is the user name that ACL patterns use; a key added at the
// provider is picked up without a restart; with the provider down, the keys fetched before still
// verify.
func TestJWKSTokens(t *testing.T) {
	p := newIDP(t)
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.publish(map[string]any{"k1": &k1.PublicKey})
	aclFile := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(aclFile, []byte("pattern readwrite users/%u/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := serve(t, func(c *config.Config) {
		c.AllowAnonymous, c.ACLFile, c.HTTPAddr = false, aclFile, "127.0.0.1:0"
		c.JWTEnabled, c.JWTJWKSURL, c.JWTJWKSCAFile = true, p.srv.URL+"/jwks.json", p.caFile
		c.JWTJWKSIssuer, c.JWTJWKSAudience, c.JWTJWKSUsernameClaim = "https://idp.test", "mqtt-broker", "preferred_username"
		c.JWTJWKSRefreshMinInterval = 50 * time.Millisecond
	})
	now := time.Now()
	claims := func(user, iss, aud string) jwt.MapClaims {
		return jwt.MapClaims{"iss": iss, "aud": aud, "sub": "id-" + user, "preferred_username": user,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	good := func(user string) jwt.MapClaims { return claims(user, "https://idp.test", "mqtt-broker") }

	alice, err := v3Token(t, a.MQTT, "alice-phone", idpToken(t, jwt.SigningMethodRS256, k1, "k1", good("alice")), nil)
	if err != nil {
		t.Fatal(err)
	}
	in := subscribe(t, alice, "users/alice/#", 1)
	publish(t, alice, "users/alice/inbox", 1, false, "hi")
	if m := in.next(t, 5*time.Second); string(m.Payload()) != "hi" {
		t.Fatalf("got %q", m.Payload())
	}
	// %u is alice: bob's topics are not hers.
	if tok := alice.Subscribe("users/bob/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe did not complete")
	} else if r := tok.(interface{ Result() map[string]byte }).Result()["users/bob/#"]; r != 0x80 {
		t.Fatalf("alice subscribing to bob's topics: %#x, want 0x80", r)
	}

	jwksRefusals(t, a, k1, k2, now)

	// Rotation at the provider: k2 joins the set; its first token fetches the set again.
	p.publish(map[string]any{"k1": &k1.PublicKey, "k2": &k2.PublicKey})
	time.Sleep(60 * time.Millisecond) // past the minimum interval between fetches
	bobTok := idpToken(t, jwt.SigningMethodES256, k2, "k2", good("bob"))
	if _, err := v3Token(t, a.MQTT, "bob-phone", bobTok, nil); err != nil {
		t.Fatalf("k2 after the rotation: %v", err)
	}
	if p.fetches() != 1 {
		t.Fatalf("the provider was asked %d times, want 1", p.fetches())
	}

	// The provider goes down: the cached keys still verify, an unknown key is refused at once.
	p.srv.Close()
	for _, tok := range []string{bobTok, idpToken(t, jwt.SigningMethodRS256, k1, "k1", good("carol"))} {
		if code, err := v5Token(t, a.MQTT, "while-down", "", tok, nil); code != 0 {
			t.Fatalf("with the provider down: %#x %v", code, err)
		}
	}
	k3, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	start := time.Now()
	if code, _ := v5Token(t, a.MQTT, "k3", "", idpToken(t, jwt.SigningMethodES256, k3, "k3", good("eve")), nil); code != 0x87 {
		t.Fatalf("unknown key with the provider down: %#x, want 0x87", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the refusal took %s", d)
	}
}

// jwksRefusals checks the provider's tokens the broker refuses, and their causes in /metrics.
func jwksRefusals(t *testing.T, a Addrs, k1 *rsa.PrivateKey, k2 *ecdsa.PrivateKey, now time.Time) {
	t.Helper()
	claims := func(iss, aud string) jwt.MapClaims {
		return jwt.MapClaims{"iss": iss, "aud": aud, "preferred_username": "x", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	}
	noName := claims("https://idp.test", "mqtt-broker")
	delete(noName, "preferred_username")
	for name, tc := range map[string]struct {
		tok   string
		cause string
	}{
		"iss":       {idpToken(t, jwt.SigningMethodRS256, k1, "k1", claims("https://other.test", "mqtt-broker")), "issuer"},
		"aud":       {idpToken(t, jwt.SigningMethodRS256, k1, "k1", claims("https://idp.test", "other")), "audience"},
		"no claim":  {idpToken(t, jwt.SigningMethodRS256, k1, "k1", noName), "username_claim"},
		"k2 before": {idpToken(t, jwt.SigningMethodES256, k2, "k2", claims("https://idp.test", "mqtt-broker")), "unknown_key"},
	} {
		if _, err := v3Token(t, a.MQTT, "x-"+name, tc.tok, nil); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			t.Fatalf("%s: %v, want 0x04", name, err)
		}
		if v := value(t, scrape(t, a.HTTP), "mcloudtt_broker_jwt_auth_failures_total", "cause", tc.cause); v < 1 {
			t.Fatalf("%s: failures{cause=%s} = %v", name, tc.cause, v)
		}
	}
}
