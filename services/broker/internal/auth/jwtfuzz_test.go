package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A client chooses its password: no token may make Verify panic, accept without a valid
// signature, or return an error without a cause, and no error may quote the token.
func FuzzJWTVerify(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	j, err := NewJWT(context.Background(), JWTConfig{Registry: keyMap{"d": {{ID: "e", Public: &key.PublicKey}}},
		ProjectID: "p", MaxLifetime: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	valid := string(sign(f, jwt.SigningMethodES256, key, claimsFor("p", now, now.Add(time.Minute))))
	f.Add(valid)
	f.Add(valid[:len(valid)-2] + "AA")
	f.Add("eyJhbGciOiJub25lIn0.eyJhdWQiOiJwIn0.")
	f.Add("a.b.c")
	f.Add(strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + ".")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := j.Verify(context.Background(), "d", []byte(token))
		if err == nil {
			if token != valid {
				// Another valid signature is possible (ECDSA is not deterministic) only from the key.
				if _, _, perr := jwt.NewParser().ParseUnverified(token, &jwt.RegisteredClaims{}); perr != nil {
					t.Fatalf("accepted an unparsable token %q", token)
				}
			}
			if id.Username != "d" {
				t.Fatalf("identity %+v", id)
			}
			return
		}
		var je *JWTError
		if !errors.As(err, &je) || je.Cause >= numJWTCauses {
			t.Fatalf("error without a cause: %v", err)
		}
		if len(token) > 16 && strings.Contains(err.Error(), token) {
			t.Fatalf("the error quotes the token: %v", err)
		}
	})
}
