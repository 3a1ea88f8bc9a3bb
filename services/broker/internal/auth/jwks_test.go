package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"github.com/MicahParks/jwkset"
)

// The key decides the algorithm: the table of what each key type verifies, registry and JWKS.
func TestAlgAllowed(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		alg    string
		key    any
		narrow bool // registry
		wide   bool // JWKS
	}{
		{"RS256", &rsaKey.PublicKey, true, true},
		{"PS256", &rsaKey.PublicKey, false, true},
		{"RS512", &rsaKey.PublicKey, false, true},
		{"ES256", &rsaKey.PublicKey, false, false},
		{"HS256", &rsaKey.PublicKey, false, false},
		{"none", &rsaKey.PublicKey, false, false},
		{"ES256", &p256.PublicKey, true, true},
		{"ES384", &p256.PublicKey, false, false},
		{"ES384", &p384.PublicKey, false, true},
		{"ES256", &p384.PublicKey, false, false},
		{"EdDSA", edPub, false, true},
		{"RS256", []byte("secret"), false, false},
	} {
		if got := algAllowed(tc.alg, tc.key, false); got != tc.narrow {
			t.Errorf("registry %s with %T: %v", tc.alg, tc.key, got)
		}
		if got := algAllowed(tc.alg, tc.key, true); got != tc.wide {
			t.Errorf("JWKS %s with %T: %v", tc.alg, tc.key, got)
		}
	}
}

// A provider's key is used only for what it says it is for: its own alg, and signatures.
func TestUsableKey(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwk := func(key any, alg jwkset.ALG, use jwkset.USE) jwkset.JWK {
		k, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "k", ALG: alg, USE: use}})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	if k, err := usableKey(jwk(&rsaKey.PublicKey, jwkset.AlgRS256, jwkset.UseSig), "RS256"); err != nil || k.(*rsa.PublicKey).N.Cmp(rsaKey.N) != 0 {
		t.Fatalf("RS256 key for RS256: %v", err)
	}
	if k, err := usableKey(jwk(rsaKey, "", ""), "PS256"); err != nil || !k.(*rsa.PublicKey).Equal(&rsaKey.PublicKey) {
		t.Fatalf("a private JWK is used by its public half only: %T %v", k, err)
	}
	for name, tc := range map[string]struct {
		k   jwkset.JWK
		alg string
	}{
		"alg differs":    {jwk(&rsaKey.PublicKey, jwkset.AlgRS256, ""), "RS384"},
		"for encryption": {jwk(&rsaKey.PublicKey, "", jwkset.UseEnc), "RS256"},
		"wrong key type": {jwk(&rsaKey.PublicKey, "", ""), "ES256"},
	} {
		var je *JWTError
		if _, err := usableKey(tc.k, tc.alg); !errors.As(err, &je) || je.Cause != CauseAlgorithm {
			t.Errorf("%s: %v", name, err)
		}
	}
}
