package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// pki is a CA with a server certificate and client certificates, written as PEM files.
type pki struct {
	dir      string
	ca       *x509.Certificate
	caKey    *ecdsa.PrivateKey
	pool     *x509.CertPool
	caFile   string
	certFile string
	keyFile  string
	serial   int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), serial: 1}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	cert, k := p.issue(t, "localhost", true)
	p.certFile = p.write(t, "server.pem", "CERTIFICATE", cert.Certificate[0])
	kb, _ := x509.MarshalECPrivateKey(k)
	p.keyFile = p.write(t, "server.key", "EC PRIVATE KEY", kb)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for cn signed by the CA.
func (p *pki) issue(t *testing.T, cn string, server bool) (tls.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, key
}

func serve(t *testing.T, mod func(*config.Config)) Addrs {
	t.Helper()
	cfg := config.Default()
	cfg.MQTTAddr, cfg.HTTPAddr, cfg.SysInterval = "127.0.0.1:0", "", 0
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, testLogger(cfg.ID), func(a Addrs) { addrs <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-addrs:
		return a
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("broker did not start")
	}
	return Addrs{}
}

// v3 connects a paho.mqtt.golang client to url and returns it, or the connect error.
func v3(t *testing.T, url, id string, mod func(*pahov3.ClientOptions)) (pahov3.Client, error) {
	t.Helper()
	o := pahov3.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetProtocolVersion(4)
	if mod != nil {
		mod(o)
	}
	c := pahov3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, context.DeadlineExceeded
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

// roundTrip subscribes on sub, publishes on pub and waits for the message.
func roundTrip(t *testing.T, sub, pub pahov3.Client, topic string) {
	t.Helper()
	got := make(chan string, 1)
	if tok := sub.Subscribe(topic, 1, func(_ pahov3.Client, m pahov3.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	pub.Publish(topic, 1, false, "hello").WaitTimeout(5 * time.Second)
	select {
	case m := <-got:
		if m != "hello" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered")
	}
}

func TestTLSAndWebSocketListeners(t *testing.T) {
	p := newPKI(t)
	a := serve(t, func(c *config.Config) {
		c.TLSAddr, c.WSAddr, c.WSSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		c.TLSCertFile, c.TLSKeyFile = p.certFile, p.keyFile
	})
	tlsConf := func(o *pahov3.ClientOptions) { o.SetTLSConfig(&tls.Config{RootCAs: p.pool, ServerName: "localhost"}) }
	tcp, err := v3(t, "tcp://"+a.MQTT, "tcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, url string }{
		{"tls", "ssl://" + a.TLS}, {"ws", "ws://" + a.WS + "/mqtt"}, {"wss", "wss://" + a.WSS + "/mqtt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := v3(t, c.url, c.name, tlsConf)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, cl, tcp, "over/"+c.name)
			roundTrip(t, tcp, cl, "back/"+c.name)
		})
	}
	// A TLS 1.1 client is refused (minimum TLS 1.2).
	_, err = tls.Dial("tcp", a.TLS, &tls.Config{RootCAs: p.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
}

func TestClientCertificatesAndCNAsUsername(t *testing.T) {
	p := newPKI(t)
	acl := filepath.Join(p.dir, "acl")
	os.WriteFile(acl, []byte("pattern readwrite devices/%u/#\n"), 0o600)
	a := serve(t, func(c *config.Config) {
		c.MQTTAddr = ""
		c.TLSAddr = "127.0.0.1:0"
		c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile = p.certFile, p.keyFile, p.caFile
		c.TLSRequireClientCert, c.TLSCNAsUsername = true, true
		c.ACLFile, c.AllowAnonymous = acl, false
	})
	alice, _ := p.issue(t, "alice", false)
	withCert := func(cert *tls.Certificate) func(*pahov3.ClientOptions) {
		return func(o *pahov3.ClientOptions) {
			conf := &tls.Config{RootCAs: p.pool, ServerName: "localhost"}
			if cert != nil {
				conf.Certificates = []tls.Certificate{*cert}
			}
			o.SetTLSConfig(conf)
		}
	}
	if _, err := v3(t, "ssl://"+a.TLS, "nocert", withCert(nil)); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	other := newPKI(t)
	stranger, _ := other.issue(t, "alice", false)
	if _, err := v3(t, "ssl://"+a.TLS, "stranger", withCert(&stranger)); err == nil {
		t.Fatal("certificate from another CA accepted")
	}
	c, err := v3(t, "ssl://"+a.TLS, "alice-1", withCert(&alice))
	if err != nil {
		t.Fatal(err)
	}
	// The CN is the user name: the %u pattern lets alice use devices/alice/# only.
	roundTrip(t, c, c, "devices/alice/temp")
	tok := c.Subscribe("devices/bob/#", 1, nil)
	tok.WaitTimeout(5 * time.Second)
	if st, ok := tok.(*pahov3.SubscribeToken); !ok || st.Result()["devices/bob/#"] != 0x80 {
		t.Fatalf("subscribe to another user's topics: %v", tok.(*pahov3.SubscribeToken).Result())
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestPasswordFileAndACL(t *testing.T) {
	dir := t.TempDir()
	hash, err := auth.HashPassword("s3cret", auth.PBKDF2)
	if err != nil {
		t.Fatal(err)
	}
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	writeFile(t, pw, "alice:"+hash+"\nbob:"+hash+"\n")
	writeFile(t, acl, `# alice may read and write her own tree, read the shared feed except its secret
user alice
topic readwrite alice/#
topic read feed/#
topic deny feed/secret
user bob
topic write feed/#
topic write alice/inbox
pattern write clients/%c/status
`)
	a := serve(t, func(c *config.Config) { c.PasswordFile, c.ACLFile, c.AllowAnonymous = pw, acl, false })

	// Authentication: anonymous and wrong passwords are refused with the right codes.
	v5connect := func(user, pass string) (*paho.Connack, *paho.Client, error) {
		conn, err := net.Dial("tcp", a.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn})
		cp := &paho.Connect{ClientID: "v5-" + user, CleanStart: true, KeepAlive: 30}
		if user != "" {
			cp.Username, cp.UsernameFlag = user, true
			cp.Password, cp.PasswordFlag = []byte(pass), true
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ca, err := c.Connect(ctx, cp)
		return ca, c, err
	}
	if ca, _, _ := v5connect("", ""); ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("anonymous v5: %+v", ca)
	}
	if ca, _, _ := v5connect("alice", "wrong"); ca == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("wrong password v5: %+v", ca)
	}
	if _, err := v3(t, "tcp://"+a.MQTT, "anon", nil); err == nil || !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
		t.Fatalf("anonymous 3.1.1: %v", err)
	}
	if _, err := v3(t, "tcp://"+a.MQTT, "bad", func(o *pahov3.ClientOptions) { o.SetUsername("alice").SetPassword("nope") }); err == nil ||
		!errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("wrong password 3.1.1: %v", err)
	}

	login := func(user string) func(*pahov3.ClientOptions) {
		return func(o *pahov3.ClientOptions) { o.SetUsername(user).SetPassword("s3cret") }
	}
	alice, err := v3(t, "tcp://"+a.MQTT, "alice-c", login("alice"))
	if err != nil {
		t.Fatal(err)
	}
	bob, err := v3(t, "tcp://"+a.MQTT, "bob-c", login("bob"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	handler := func(_ pahov3.Client, m pahov3.Message) { got <- m.Topic() }
	// SUBSCRIBE: allowed within alice/# and feed/#, refused elsewhere (3.x 0x80).
	tok := alice.SubscribeMultiple(map[string]byte{"feed/#": 1, "alice/#": 1, "bob/#": 1}, handler)
	tok.WaitTimeout(5 * time.Second)
	res := tok.(*pahov3.SubscribeToken).Result()
	if res["feed/#"] != 1 || res["alice/#"] != 1 || res["bob/#"] != 0x80 {
		t.Fatalf("SUBACK %v", res)
	}
	// PUBLISH: bob may write feed/# and alice/inbox; his publish to alice/private is dropped;
	// feed/secret is written but alice may not read it, though her feed/# subscription matches.
	for _, tp := range []string{"feed/news", "feed/secret", "alice/private", "alice/inbox"} {
		bob.Publish(tp, 1, false, "x").WaitTimeout(5 * time.Second)
	}
	want := map[string]bool{"feed/news": true, "alice/inbox": true}
	for n := len(want); n > 0; n-- { // not "range want": the loop deletes from want
		select {
		case tp := <-got:
			if !want[tp] {
				t.Fatalf("delivered %s", tp)
			}
			delete(want, tp)
		case <-time.After(5 * time.Second):
			t.Fatalf("missing %v", want)
		}
	}
	select {
	case tp := <-got:
		t.Fatalf("delivered %s despite the ACL", tp)
	case <-time.After(300 * time.Millisecond):
	}

	// v5: a refused publish is answered with 0x87; a refused subscription with 0x87.
	ca, c5, err := v5connect("bob", "s3cret")
	if err != nil || ca.ReasonCode != 0 {
		t.Fatalf("bob v5: %v %+v", err, ca)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c5.Publish(ctx, &paho.Publish{Topic: "alice/private", QoS: 1, Payload: []byte("x")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("refused v5 publish: %+v %v", resp, err)
	}
	sa, _ := c5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "alice/#", QoS: 1}}})
	if sa == nil || sa.Reasons[0] != 0x87 {
		t.Fatalf("refused v5 subscription: %+v", sa)
	}
	// pattern %c: bob may write clients/<his client id>/status only.
	resp, _ = c5.Publish(ctx, &paho.Publish{Topic: "clients/v5-bob/status", QoS: 1, Payload: []byte("up")})
	if resp == nil || resp.ReasonCode != 0 {
		t.Fatalf("pattern %%c publish: %+v", resp)
	}
	resp, _ = c5.Publish(ctx, &paho.Publish{Topic: "clients/someone/status", QoS: 1, Payload: []byte("up")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("pattern %%c for another client id: %+v", resp)
	}
	_ = c5.Disconnect(&paho.Disconnect{})
}
