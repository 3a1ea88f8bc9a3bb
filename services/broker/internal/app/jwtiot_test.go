package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// A device of the Cloud IoT Core compatible mode logs in as it did with IoT Core: its long client
// id, a JWT signed with its own key registered under its short device id, on any replica. A token
// signed with another device's key, or a client id of another registry, is refused.
func TestJWTIoTCoreDevice(t *testing.T) {
	rs := redistest.Start(t)
	reg := registry(t, rs)
	own, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	addKey(t, reg, "thermostat-7", &own.PublicKey, time.Time{})
	addKey(t, reg, "thermostat-8", &other.PublicKey, time.Time{})
	addrs := jwtReplicas(t, rs, 2, func(c *config.Config) {
		c.IoTCoreEnabled, c.IoTCoreProject, c.IoTCoreRegistry = true, testProject, "fleet"
	})
	const id = "projects/" + testProject + "/locations/europe-west1/registries/fleet/devices/thermostat-7"
	now := time.Now()
	good := signToken(t, jwt.SigningMethodES256, own, deviceClaims(testProject, now, now.Add(time.Hour)))
	for _, a := range addrs {
		c, err := v3Token(t, a.MQTT, id, good, nil)
		if err != nil {
			t.Fatalf("device with its own token on %s: %v", a.MQTT, err)
		}
		c.Disconnect(10)
		if code, _ := v5Token(t, a.MQTT, id, "", good, nil); code != 0 {
			t.Fatalf("v5 device with its own token on %s: CONNACK 0x%02x", a.MQTT, code)
		}
	}
	stolen := signToken(t, jwt.SigningMethodES256, other, deviceClaims(testProject, now, now.Add(time.Hour)))
	// No user name, as IoT Core devices send: Not authorized (a wrong password with a user
	// name gets 0x86).
	if code, _ := v5Token(t, addrs[0].MQTT, id, "", stolen, nil); code != 0x87 {
		t.Fatalf("token of another device's key: CONNACK 0x%02x, want 0x87", code)
	}
	if _, err := v3Token(t, addrs[1].MQTT, id, stolen, nil); err == nil {
		t.Fatal("3.1.1 device with another device's token accepted")
	}
	foreign := "projects/" + testProject + "/locations/europe-west1/registries/other/devices/thermostat-7"
	if code, _ := v5Token(t, addrs[0].MQTT, foreign, "", good, nil); code != 0x85 {
		t.Fatalf("client id of another registry: CONNACK 0x%02x, want 0x85", code)
	}
}
