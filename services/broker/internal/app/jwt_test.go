package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/pkg/devices"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/pkg/wire"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

const testProject = "test-project"

// signToken signs claims with key; the tests make their tokens as devices do.
func signToken(t testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deviceClaims are Cloud IoT Core's: aud, iat, exp.
func deviceClaims(aud string, iat, exp time.Time) jwt.MapClaims {
	return jwt.MapClaims{"aud": aud, "iat": iat.Unix(), "exp": exp.Unix()}
}

func publicPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// registry opens the device registry in rs, as `broker devices` does.
func registry(t testing.TB, rs *redistest.Server) *devices.Registry {
	t.Helper()
	rdb, err := devices.Dial([]string{rs.Addr()}, rs.Env())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return devices.New(rdb, wire.NewNames(""))
}

// addKey registers pub for device and returns its id.
func addKey(t testing.TB, reg *devices.Registry, device string, pub any, expires time.Time) string {
	t.Helper()
	k, err := devices.ParseKey(publicPEM(t, pub))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Add(context.Background(), device, k, expires, 3); err != nil {
		t.Fatal(err)
	}
	return k.ID
}

// jwtReplicas starts n replicas on rs with the device registry on and anonymous access off.
func jwtReplicas(t *testing.T, rs *redistest.Server, n int, mod func(*config.Config)) []Addrs {
	t.Helper()
	return replicas(t, rs, n, func(_ int, c *config.Config) {
		c.AllowAnonymous = false
		c.JWTEnabled, c.JWTRegistry, c.JWTProjectID, c.JWTClockSkew = true, true, testProject, 0
		if mod != nil {
			mod(c)
		}
	})
}

// v3Token connects a paho 3.1.1 client with token as its password (the user name is not used, as
// in Cloud IoT Core). onLost, if set, hears the connection end.
func v3Token(t *testing.T, addr, id, token string, onLost func(error)) (pahov3.Client, error) {
	return v3(t, "tcp://"+addr, id, func(o *pahov3.ClientOptions) {
		o.SetUsername("unused").SetPassword(token)
		if onLost != nil {
			o.SetConnectionLostHandler(func(_ pahov3.Client, err error) { onLost(err) })
		}
	})
}

// v5Token connects a paho.golang 5.0 client with token as its password, with user as its user
// name when not empty, and returns the CONNACK's reason code. disc, if set, receives the
// server's DISCONNECT.
func v5Token(t *testing.T, addr, id, user, token string, disc chan<- *paho.Disconnect) (byte, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if disc != nil {
		cfg.OnServerDisconnect = func(d *paho.Disconnect) { disc <- d }
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, Password: []byte(token), PasswordFlag: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if ca == nil {
		_ = conn.Close()
		return 0, err
	}
	if ca.ReasonCode == 0 {
		t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	} else {
		_ = conn.Close()
	}
	return ca.ReasonCode, err
}

// Tokens signed with registry keys, over 3.1.1 and 5.0: the valid ones are accepted, every other
// one refused with the code a wrong password gets, and each refusal counted by its cause.
func TestJWTRegistryTokens(t *testing.T) {
	rs := redistest.Start(t)
	reg := registry(t, rs)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oldKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	addKey(t, reg, "dev-rsa", &rsaKey.PublicKey, time.Time{})
	addKey(t, reg, "dev-ec", &ecKey.PublicKey, time.Time{})
	addKey(t, reg, "dev-ec", &oldKey.PublicKey, time.Now().Add(-time.Minute)) // expired
	addKey(t, reg, "dev-other", &otherKey.PublicKey, time.Time{})
	a := jwtReplicas(t, rs, 1, nil)[0]

	now := time.Now()
	good := deviceClaims(testProject, now, now.Add(time.Hour))
	hmac := signToken(t, jwt.SigningMethodHS256, publicPEM(t, &rsaKey.PublicKey), good)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, good).SignedString(jwt.UnsafeAllowNoneSignatureType)
	cases := []struct {
		name, device, token, cause string // cause "": accepted
	}{
		{"RS256", "dev-rsa", signToken(t, jwt.SigningMethodRS256, rsaKey, good), ""},
		{"ES256", "dev-ec", signToken(t, jwt.SigningMethodES256, ecKey, good), ""},
		{"expired key", "dev-ec", signToken(t, jwt.SigningMethodES256, oldKey, good), "key_expired"},
		{"aud wrong", "dev-rsa", signToken(t, jwt.SigningMethodRS256, rsaKey, deviceClaims("other-project", now, now.Add(time.Hour))), "audience"},
		{"exp past", "dev-rsa", signToken(t, jwt.SigningMethodRS256, rsaKey, deviceClaims(testProject, now.Add(-2*time.Hour), now.Add(-time.Hour))), "expired"},
		{"lifetime over the maximum", "dev-rsa", signToken(t, jwt.SigningMethodRS256, rsaKey, deviceClaims(testProject, now, now.Add(25*time.Hour))), "lifetime"},
		{"alg none", "dev-rsa", none, "algorithm"},
		{"HMAC with the public key as secret", "dev-rsa", hmac, "algorithm"},
		{"another device's token", "dev-ec", signToken(t, jwt.SigningMethodES256, otherKey, good), "signature"},
		{"unknown device", "dev-nobody", signToken(t, jwt.SigningMethodES256, otherKey, good), "unknown_device"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v3Token(t, a.MQTT, tc.device, tc.token, nil)
			code, err5 := v5Token(t, a.MQTT, tc.device, "unused", tc.token, nil)
			if tc.cause == "" {
				if err != nil || err5 != nil || code != 0 {
					t.Fatalf("refused: 3.1.1 %v, 5.0 %#x %v", err, code, err5)
				}
				return
			}
			if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
				t.Fatalf("3.1.1: %v, want 0x04", err)
			}
			if code != 0x86 {
				t.Fatalf("5.0: %#x %v, want 0x86", code, err5)
			}
			// Without a user name (5.0 only): Not authorized.
			if code, _ := v5Token(t, a.MQTT, tc.device, "", tc.token, nil); code != 0x87 {
				t.Fatalf("5.0 without a user name: %#x, want 0x87", code)
			}
		})
	}
	fams := scrape(t, a.HTTP)
	for _, tc := range cases {
		if tc.cause == "" {
			continue
		}
		if v := value(t, fams, "mcloudtt_broker_jwt_auth_failures_total", "cause", tc.cause); v < 3 {
			t.Errorf("failures{cause=%q} = %v, want at least 3", tc.cause, v)
		}
	}
	if v := value(t, fams, "mcloudtt_broker_jwt_auth_accepted_total", "source", "registry"); v != 4 {
		t.Errorf("accepted{source=registry} = %v, want 4", v)
	}
}
