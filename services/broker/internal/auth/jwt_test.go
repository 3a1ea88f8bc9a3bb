package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keyMap is a device registry in memory, for the verifier's own tests (the broker's tests use
// the registry in a real Redis).
type keyMap map[string][]DeviceKey

func (m keyMap) DeviceKeys(_ context.Context, device string) ([]DeviceKey, error) {
	return m[device], nil
}

func sign(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) []byte {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

func claimsFor(aud string, iat, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"aud": aud, "iat": iat.Unix(), "exp": exp.Unix()}
}

// unsigned is a token with alg "none".
func unsigned(t *testing.T, claims jwt.MapClaims) []byte {
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

func TestJWTRegistryCauses(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	reg := keyMap{
		"dev-1": {{ID: "r", Public: &rsaKey.PublicKey}, {ID: "e", Public: &ecKey.PublicKey},
			{ID: "old", Public: &oldKey.PublicKey, Expires: now.Add(-time.Minute)}},
		"dev-2": {{ID: "o", Public: &otherKey.PublicKey}},
	}
	j, err := NewJWT(context.Background(), JWTConfig{Registry: reg, ProjectID: "proj", Skew: time.Minute, MaxLifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	good := claimsFor("proj", now, now.Add(time.Hour))
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	for _, tc := range []struct {
		name   string
		client string
		token  []byte
		want   JWTCause // numJWTCauses: accepted
	}{
		{"RS256", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, good), numJWTCauses},
		{"ES256", "dev-1", sign(t, jwt.SigningMethodES256, ecKey, good), numJWTCauses},
		{"RS512 with an RSA key", "dev-1", sign(t, jwt.SigningMethodRS512, rsaKey, good), CauseAlgorithm},
		{"expired key", "dev-1", sign(t, jwt.SigningMethodES256, oldKey, good), CauseKeyExpired},
		{"another device's key", "dev-1", sign(t, jwt.SigningMethodES256, otherKey, good), CauseSignature},
		{"unknown device", "dev-3", sign(t, jwt.SigningMethodES256, otherKey, good), CauseUnknownDevice},
		{"aud", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("other", now, now.Add(time.Hour))), CauseAudience},
		{"exp past", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("proj", now.Add(-3*time.Hour), now.Add(-2*time.Hour))), CauseExpired},
		{"exp within skew", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("proj", now.Add(-time.Hour), now.Add(-30*time.Second))), numJWTCauses},
		{"iat future", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("proj", now.Add(5*time.Minute), now.Add(time.Hour))), CauseNotYetValid},
		{"lifetime", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, claimsFor("proj", now, now.Add(25*time.Hour))), CauseLifetime},
		{"no iat", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"aud": "proj", "exp": now.Add(time.Hour).Unix()}), CauseMissingClaim},
		{"no exp", "dev-1", sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"aud": "proj", "iat": now.Unix()}), CauseMissingClaim},
		{"alg none", "dev-1", unsigned(t, good), CauseAlgorithm},
		{"HMAC with the public key", "dev-1", sign(t, jwt.SigningMethodHS256, pubPEM, good), CauseAlgorithm},
		{"garbage", "dev-1", []byte("a.b.c"), CauseMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := j.Verify(context.Background(), tc.client, tc.token)
			if tc.want == numJWTCauses {
				if err != nil || id.Username != tc.client || id.Expires.IsZero() {
					t.Fatalf("refused: %v (identity %+v)", err, id)
				}
				return
			}
			var je *JWTError
			if !errors.As(err, &je) || je.Cause != tc.want {
				t.Fatalf("got %v, want cause %s", err, tc.want)
			}
			if strings.Contains(je.Error(), string(tc.token)) {
				t.Fatal("the error quotes the token")
			}
		})
	}
	if j.Failures(CauseAlgorithm) != 3 {
		t.Fatalf("algorithm failures counted %d, want 3", j.Failures(CauseAlgorithm))
	}
}

func TestJWTDeviceOf(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	reg := keyMap{"d1": {{ID: "e", Public: &ecKey.PublicKey}}}
	j, err := NewJWT(context.Background(), JWTConfig{Registry: reg, ProjectID: "p", MaxLifetime: time.Hour,
		DeviceOf: func(id string) (string, bool) {
			const prefix = "projects/p/locations/r/registries/g/devices/"
			if len(id) > len(prefix) && id[:len(prefix)] == prefix {
				return id[len(prefix):], true
			}
			return "", false
		}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok := sign(t, jwt.SigningMethodES256, ecKey, claimsFor("p", now, now.Add(time.Minute)))
	if id, err := j.Verify(context.Background(), "projects/p/locations/r/registries/g/devices/d1", tok); err != nil || id.Username != "d1" {
		t.Fatalf("long client id: %+v %v", id, err)
	}
	var je *JWTError
	if _, err := j.Verify(context.Background(), "d1", tok); !errors.As(err, &je) || je.Cause != CauseDeviceID {
		t.Fatalf("short client id: %v", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	for s, want := range map[string]bool{"eyJ.eyJ.sig": true, "a.b.c": true, "secret": false, "a.b": false,
		"a.b.c.d": false, "a b.c.d": false, "": false, "a.b.c+": false} {
		if LooksLikeJWT([]byte(s)) != want {
			t.Errorf("%q: want %v", s, want)
		}
	}
}
