package app

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/api"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/config"
)

const keysProject = "keys-project"

// newDeviceKey returns a P-256 key, the PEM of its public key and the PEM of the private key.
func newDeviceKey(t *testing.T) (*ecdsa.PrivateKey, string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}))
}

// deviceToken is a Cloud IoT Core device's password: an ES256 JWT with aud, iat and exp.
func deviceToken(t *testing.T, k *ecdsa.PrivateKey) string {
	t.Helper()
	now := time.Now()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"aud": keysProject,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}).SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// connectToken connects a paho 3.1.1 client with token as its password and returns the error
// of the CONNECT (nil: accepted; the client is then disconnected).
func connectToken(addr, id, token string) error {
	o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername("unused").
		SetPassword(token).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	cl := pahov3.NewClient(o)
	tok := cl.Connect()
	tok.Wait()
	if err := tok.Error(); err != nil {
		return err
	}
	cl.Disconnect(100)
	return nil
}

// The device keys of JWT authentication managed through the gateway's API, against real broker
// replicas with the device registry on (anonymous access off) and a real Redis: a key added
// through the API lets a device's token in on every replica at once, and once removed the same
// token is refused; a private key is refused with a clear error and never stored or logged; the
// read-only token cannot change keys; the per-device maximum (GATEWAY_JWT_MAX_KEYS) answers 409;
// every change writes an audit line.
func TestManagementAPIDeviceKeys(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, clusterOptions{token: readToken,
		brokerEnv: []string{"BROKER_ALLOW_ANONYMOUS=false", "BROKER_JWT_ENABLED=true", "BROKER_JWT_REGISTRY=true",
			"BROKER_JWT_PROJECT_ID=" + keysProject},
		gateway: func(cfg *config.Config) {
			cfg.APIToken, cfg.AdminToken, cfg.APITimeout, cfg.JWTMaxKeys = readToken, adminToken, time.Second, 2
		}})
	addrs := c.brokerAddrs(2)
	key, pubPEM, privPEM := newDeviceKey(t)
	token := deviceToken(t, key)
	const keys = "/api/v1/devices/dev-7/keys"

	if err := connectToken(addrs["broker-a"], "dev-7", token); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("a token before its key is registered: %v", err)
	}
	if code, b := c.call("POST", keys, readToken, api.DeviceKeyRequest{PEM: pubPEM}); code != 403 {
		t.Fatalf("POST with the read-only token: %d %s", code, b)
	}
	code, b := c.call("POST", keys, adminToken, api.DeviceKeyRequest{PEM: privPEM})
	if code != 400 || !strings.Contains(string(b), "PRIVATE key") {
		t.Fatalf("POST of a private key: %d %s", code, b)
	}
	var list api.DeviceKeysAnswer
	c.callJSON("GET", keys, readToken, nil, 200, &list)
	if len(list.Keys) != 0 || list.MaxKeys != 2 {
		t.Fatalf("keys after the refusals: %+v", list)
	}

	var added api.DeviceKeyAnswer
	c.callJSON("POST", keys, adminToken, api.DeviceKeyRequest{PEM: pubPEM}, 201, &added)
	if added.Updated || added.Key.Algorithm != "ES256" || added.Key.Format != "ES256_PEM" || len(added.Key.ID) != 32 {
		t.Fatalf("added: %+v", added)
	}
	c.callJSON("GET", keys, readToken, nil, 200, &list)
	if len(list.Keys) != 1 || list.Keys[0].ID != added.Key.ID || list.Keys[0].PEM != pubPEM || list.Keys[0].Expires != nil {
		t.Fatalf("list: %+v", list)
	}
	for _, id := range []string{"broker-a", "broker-b"} {
		if err := connectToken(addrs[id], "dev-7", token); err != nil {
			t.Fatalf("%s: the token signed by the added key: %v", id, err)
		}
	}
	checkMaxKeys(t, c, keys)

	c.callJSON("DELETE", keys+"/"+added.Key.ID, adminToken, nil, 200, nil)
	if code, b := c.call("DELETE", keys+"/"+added.Key.ID, adminToken, nil); code != 404 {
		t.Fatalf("DELETE of a removed key: %d %s", code, b)
	}
	for _, id := range []string{"broker-a", "broker-b"} {
		if err := connectToken(addrs[id], "dev-7", token); !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			t.Fatalf("%s: the token of the removed key: %v", id, err)
		}
	}
	checkDeviceKeyAudit(t, c.logs.String(), added.Key.ID, privPEM)
}

// checkMaxKeys fills the device up to its maximum of two keys (one there already) and expects
// the next to be refused with 409; the extra key is removed again.
func checkMaxKeys(t *testing.T, c *testCluster, keys string) {
	t.Helper()
	_, second, _ := newDeviceKey(t)
	_, third, _ := newDeviceKey(t)
	var ans api.DeviceKeyAnswer
	expires := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	c.callJSON("POST", keys, adminToken, api.DeviceKeyRequest{PEM: second, Expires: &expires}, 201, &ans)
	if ans.Key.Expires == nil || !ans.Key.Expires.Equal(expires) {
		t.Fatalf("the second key's expiry: %+v", ans.Key)
	}
	code, b := c.call("POST", keys, adminToken, api.DeviceKeyRequest{PEM: third})
	if code != 409 || !strings.Contains(string(b), "maximum number of keys") {
		t.Fatalf("a third key with GATEWAY_JWT_MAX_KEYS=2: %d %s", code, b)
	}
	c.callJSON("DELETE", keys+"/"+ans.Key.ID, adminToken, nil, 200, nil)
}

// checkDeviceKeyAudit finds the audit lines of the key's addition and removal and of the
// refused private key, and no private key material in the log.
func checkDeviceKeyAudit(t *testing.T, logs, keyID, privPEM string) {
	t.Helper()
	body := strings.Split(strings.TrimSpace(privPEM), "\n")[1]
	if strings.Contains(logs, body) {
		t.Fatal("the private key was written to the log")
	}
	want := map[string]bool{"device-key-add 201": false, "device-key-add 400 private key": false,
		"device-key-remove 200": false, "device-key-remove 404": false, "device-key-add 409": false}
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Audit                             bool
			Who, Action, Target, Key, Refused string
			Status                            int
		}
		if json.Unmarshal([]byte(line), &l) != nil || !l.Audit || l.Target != "dev-7" {
			continue
		}
		if l.Who != "admin" || (l.Status != 400 && l.Status != 409 && l.Key != keyID) {
			continue
		}
		k := l.Action + " " + strconv.Itoa(l.Status)
		if l.Refused != "" {
			k += " " + l.Refused
		}
		want[k] = true
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no audit line %q in:\n%s", k, logs)
		}
	}
}
