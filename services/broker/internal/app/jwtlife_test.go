package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// A key rotation on two replicas, without a restart: the new key is added (old and new both
// work, on both replicas), then the old one removed (refused on both from the next CONNECT).
func TestJWTKeyRotationWithoutRestart(t *testing.T) {
	rs := redistest.Start(t)
	reg := registry(t, rs)
	oldKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	newKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oldID := addKey(t, reg, "dev-rot", &oldKey.PublicKey, time.Time{})
	reps := jwtReplicas(t, rs, 2, nil)

	now := time.Now()
	claims := deviceClaims(testProject, now, now.Add(time.Hour))
	oldTok := signToken(t, jwt.SigningMethodRS256, oldKey, claims)
	newTok := signToken(t, jwt.SigningMethodES256, newKey, claims)
	connect := func(a Addrs, tok string) error {
		c, err := v3Token(t, a.MQTT, "dev-rot", tok, nil)
		if err == nil {
			c.Disconnect(50)
		}
		return err
	}
	for i, a := range reps {
		if err := connect(a, oldTok); err != nil {
			t.Fatalf("replica %d, old key before the rotation: %v", i, err)
		}
		if err := connect(a, newTok); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			t.Fatalf("replica %d, new key before it is added: %v", i, err)
		}
	}
	addKey(t, reg, "dev-rot", &newKey.PublicKey, time.Time{})
	for i, a := range reps {
		for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
			if err := connect(a, tok); err != nil {
				t.Fatalf("replica %d, %s key during the rotation: %v", i, name, err)
			}
		}
	}
	if n, err := reg.Remove(context.Background(), "dev-rot", oldID); err != nil || n != 1 {
		t.Fatalf("remove: %d %v", n, err)
	}
	for i, a := range reps {
		if err := connect(a, oldTok); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			t.Fatalf("replica %d, old key after its removal: %v", i, err)
		}
		if code, err := v5Token(t, a.MQTT, "dev-rot", "unused", oldTok, nil); code != 0x86 {
			t.Fatalf("replica %d, 5.0 old key after its removal: %#x %v", i, code, err)
		}
		if err := connect(a, newTok); err != nil {
			t.Fatalf("replica %d, new key after the rotation: %v", i, err)
		}
	}
}

// A connection authenticated by a token ends when the token expires: a 5.0 client hears
// DISCONNECT 0xA0 (Maximum connect time), a 3.1.1 client loses the connection; both are counted
// as credentials_expired, and the log says why without quoting the token.
func TestJWTConnectionClosedAtExpiry(t *testing.T) {
	rs := redistest.Start(t)
	reg := registry(t, rs)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	addKey(t, reg, "dev-v3", &key.PublicKey, time.Time{})
	addKey(t, reg, "dev-v5", &key.PublicKey, time.Time{})
	a := jwtReplicas(t, rs, 1, nil)[0]

	now := time.Now()
	exp := now.Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	tok := signToken(t, jwt.SigningMethodES256, key, deviceClaims(testProject, now, exp))
	lost := make(chan time.Time, 1)
	if _, err := v3Token(t, a.MQTT, "dev-v3", tok, func(error) { lost <- time.Now() }); err != nil {
		t.Fatal(err)
	}
	disc := make(chan *paho.Disconnect, 1)
	if code, err := v5Token(t, a.MQTT, "dev-v5", "unused", tok, disc); code != 0 || err != nil {
		t.Fatalf("5.0: %#x %v", code, err)
	}
	select {
	case d := <-disc:
		if d.ReasonCode != 0xA0 {
			t.Fatalf("5.0 DISCONNECT reason %#x, want 0xA0", d.ReasonCode)
		}
		if at := time.Now(); at.Before(exp) || at.After(exp.Add(3*time.Second)) {
			t.Fatalf("5.0 disconnected at %s, the token expires at %s", at, exp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("5.0 client still connected after its token expired")
	}
	select {
	case at := <-lost:
		if at.Before(exp) {
			t.Fatalf("3.1.1 disconnected at %s, before the token expired at %s", at, exp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("3.1.1 client still connected after its token expired")
	}
	deadline := time.Now().Add(5 * time.Second)
	for value(t, scrape(t, a.HTTP), "mcloudtt_broker_disconnects_total", "reason", "credentials_expired") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("disconnects{reason=credentials_expired} never reached 2")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Refusals are logged with their cause, never with the token.
func TestJWTRefusalLoggedWithoutToken(t *testing.T) {
	rs := redistest.Start(t)
	reg := registry(t, rs)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	addKey(t, reg, "dev-log", &key.PublicKey, time.Time{})
	a, logs := serveLogged(t, func(c *config.Config) {
		c.RedisAddrs, c.Env = []string{rs.Addr()}, rs.Env()
		c.AllowAnonymous = false
		c.JWTEnabled, c.JWTRegistry, c.JWTProjectID = true, true, testProject
	})
	now := time.Now()
	tok := signToken(t, jwt.SigningMethodES256, key, deviceClaims("wrong-audience", now, now.Add(time.Hour)))
	if code, _ := v5Token(t, a.MQTT, "dev-log", "unused", tok, nil); code != 0x86 {
		t.Fatalf("got %#x, want 0x86", code)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `"cause":"audience"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged with its cause:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), sig) {
		t.Fatal("the log quotes the token")
	}
}
