package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// The methods in their documented order, with a password file, the device registry and an
// identity provider all on: a user of the password file is checked against it even when the
// password looks like a token; other JWT-shaped passwords are tokens, routed by iss to the
// provider or to the registry; anything else is a wrong password. With Redis gone, a registry
// token is answered "server unavailable", not "bad password".
func TestJWTMethodOrder(t *testing.T) {
	rs := redistest.Start(t)
	reg := registry(t, rs)
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	idpKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	addKey(t, reg, "dev-1", &devKey.PublicKey, time.Time{})
	p := newIDP(t)
	p.publish(map[string]any{"idp-1": &idpKey.PublicKey})

	now := time.Now()
	devTok := signToken(t, jwt.SigningMethodES256, devKey, deviceClaims(testProject, now, now.Add(time.Hour)))
	idpTok := idpToken(t, jwt.SigningMethodES256, idpKey, "idp-1", jwt.MapClaims{"iss": "https://idp.test",
		"aud": "mqtt-broker", "sub": "carol", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	// alice's password in the file happens to be shaped like a token.
	hash, err := auth.HashPassword("aaaa.bbbb.cccc", auth.PBKDF2)
	if err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "passwords")
	if err := os.WriteFile(pwFile, []byte("alice:"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := jwtReplicas(t, rs, 1, func(c *config.Config) {
		c.PasswordFile = pwFile
		c.JWTJWKSURL, c.JWTJWKSCAFile, c.JWTJWKSIssuer, c.JWTJWKSAudience = p.srv.URL, p.caFile, "https://idp.test", "mqtt-broker"
	})[0]
	connect := func(id, user, password string) error {
		c, err := v3(t, "tcp://"+a.MQTT, id, func(o *pahov3.ClientOptions) { o.SetUsername(user).SetPassword(password) })
		if err == nil {
			c.Disconnect(50)
		}
		return err
	}
	for _, tc := range []struct {
		name, id, user, password string
		ok                       bool
	}{
		{"password file user", "c1", "alice", "aaaa.bbbb.cccc", true},
		{"password file user with a device token", "dev-1", "alice", devTok, false},
		{"registry token", "dev-1", "unused", devTok, true},
		{"provider token", "anything", "unused", idpTok, true},
		{"provider token for the registry's device", "dev-1", "unused", idpTok, true},
		{"unknown user, no token", "c2", "bob", "secret", false},
	} {
		err := connect(tc.id, tc.user, tc.password)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword)) {
			t.Fatalf("%s: %v (want accepted: %v)", tc.name, err, tc.ok)
		}
	}
	rs.Stop()
	if code, err := v5Token(t, a.MQTT, "dev-1", "unused", devTok, nil); code != 0x88 {
		t.Fatalf("registry token with Redis gone: %#x %v, want 0x88", code, err)
	}
}
