//go:build linux

package broker_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/listener"
)

// Idle connections are parked: the broker holds no goroutine for them, and they still answer,
// time out and can be closed from the server's side.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.ParkAfter = 100 * time.Millisecond })
	const n = 300
	before := runtime.NumGoroutine()
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, b.Addr, 4)
		conns[i].connect(&mqtt.Connect{ClientID: fmt.Sprintf("idle-%d", i), CleanStart: true, KeepAlive: 60})
	}
	grown := 0
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		grown = runtime.NumGoroutine() - before
		if grown < n/20 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d idle connections: %d more goroutines in the process", n, grown)
	if grown >= n/20 {
		t.Fatalf("%d idle connections hold %d goroutines; want fewer than %d", n, grown, n/20)
	}
	// Each PINGREQ wakes its connection's reader, which answers and parks again.
	for round := 0; round < 2; round++ {
		for _, c := range conns {
			c.send(&mqtt.Pingreq{})
		}
		for i, c := range conns {
			if _, ok := c.read().(*mqtt.Pingresp); !ok {
				t.Fatalf("round %d: connection %d: want PINGRESP", round, i)
			}
		}
	}
	// A close from the server's side (a takeover) reaches a parked connection.
	again := dialRaw(t, b.Addr, 4)
	again.connect(&mqtt.Connect{ClientID: "idle-0", CleanStart: true, KeepAlive: 60})
	conns[0].expectClosed(5 * time.Second)
	// And the keep-alive deadline of a parked one: 1 s keep alive, closed after 1.5 s.
	quiet := dialRaw(t, b.Addr, 4)
	quiet.connect(&mqtt.Connect{ClientID: "quiet", CleanStart: true, KeepAlive: 1})
	start := time.Now()
	quiet.expectClosed(5 * time.Second)
	if d := time.Since(start); d < 1400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("a parked connection with keep alive 1 s closed after %v, want about 1.5 s", d)
	}
}

// A TLS record that arrives in two parts, with the broker's reader parked in between, is read
// whole: crypto/tls keeps the first part when the park deadline passes (a temporary error).
func TestTLSRecordSplitAcrossPark(t *testing.T) {
	addr := startTLSBroker(t)
	sub := dialTLS(t, addr, false)
	sub.connect(&mqtt.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30})
	sub.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "split/#", QoS: 1}}})
	if _, ok := sub.read().(*mqtt.Suback); !ok {
		t.Fatal("want SUBACK")
	}
	pub := dialTLS(t, addr, true) // every write in two halves, 50 ms apart
	pub.connect(&mqtt.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30})
	for i := 1; i <= 5; i++ {
		pub.send(&mqtt.Publish{QoS: 1, PacketID: uint16(i), Topic: "split/t", Payload: []byte(fmt.Sprintf("m%d", i))})
		if ack, ok := pub.read().(*mqtt.Puback); !ok || ack.PacketID != uint16(i) {
			t.Fatalf("message %d: want PUBACK", i)
		}
		got, ok := sub.read().(*mqtt.Publish)
		if !ok || string(got.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: subscriber got %+v", i, got)
		}
		sub.send(&mqtt.Puback{PacketID: got.PacketID})
	}
}

func startTLSBroker(t *testing.T) string {
	t.Helper()
	certFile, keyFile := writeSelfSigned(t)
	certs, err := listener.LoadCerts(listener.TLSOptions{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The 50 ms pause in a record parks the connection.
	b := serveBroker(t, listener.TLS(ln, certs), nil, func(c *config.Config) { c.ParkAfter = 10 * time.Millisecond })
	return b.Addr
}

func dialTLS(t *testing.T, addr string, split bool) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if split {
		nc = &splitConn{Conn: nc}
	}
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true}) // the test's own throwaway certificate
	t.Cleanup(func() { _ = tc.Close() })
	rd := mqtt.NewReader(bufio.NewReader(tc), 0)
	rd.SetVersion(4)
	return &rawConn{t: t, conn: tc, rd: rd, v: 4}
}

// splitConn writes each buffer in two parts with a pause between them.
type splitConn struct{ net.Conn }

func (c *splitConn) Write(p []byte) (int, error) {
	if len(p) < 2 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	time.Sleep(50 * time.Millisecond)
	m, err := c.Conn.Write(p[len(p)/2:])
	return n + m, err
}

func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Connect slots: with one slot, clients that stall mid-CONNECT (or send nothing) hold none, so
// others connect at once, and many connecting together all get in.
func TestConnectSlotsHeldOnlyWithInput(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.ConnectConcurrency = 1 })
	var connect []byte
	connect, err := (&mqtt.Connect{ProtocolName: "MQTT", Version: 4, ClientID: "stall", CleanStart: true, KeepAlive: 30}).AppendTo(connect, 4)
	if err != nil {
		t.Fatal(err)
	}
	silent := dialRaw(t, b.Addr, 4)
	_ = silent
	staller := dialRaw(t, b.Addr, 4)
	staller.write(connect[:3]) // a third of the CONNECT, then nothing
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	ok := dialRaw(t, b.Addr, 4)
	ok.connect(&mqtt.Connect{ClientID: "ok", CleanStart: true, KeepAlive: 30})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("CONNACK after %v behind a stalled client", d)
	}
	const n = 50
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			conn, err := net.DialTimeout("tcp", b.Addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			pk, _ := (&mqtt.Connect{ProtocolName: "MQTT", Version: 4, ClientID: fmt.Sprintf("many-%d", i), CleanStart: true}).AppendTo(nil, 4)
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := conn.Write(pk); err != nil {
				errs <- err
				return
			}
			ack := make([]byte, 4)
			if _, err := io.ReadFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
				errs <- fmt.Errorf("client %d: CONNACK %x, %v", i, ack, err)
				return
			}
			errs <- nil
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The staller's CONNECT completes once the rest of it arrives.
	staller.write(connect[3:])
	if ack, okAck := staller.read().(*mqtt.Connack); !okAck || ack.ReasonCode != 0 {
		t.Fatalf("stalled client: %+v", ack)
	}
}

// A connection parked right after CONNECT (50 ms without input) and woken by its first packet
// reads it at once and parks again only once idle: one park each, not a park per poll while the
// deadline it parked on is still the one set.
func TestWokenConnectionReadsAtOnce(t *testing.T) {
	b := startBroker(t) // BROKER_PARK_AFTER 1 s
	c := dialRaw(t, b.Addr, 4)
	c.connect(&mqtt.Connect{ClientID: "late", CleanStart: true, KeepAlive: 30})
	for deadline := time.Now().Add(2 * time.Second); b.Server.Stats().Parked != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection was not parked 50 ms after CONNECT")
		}
	}
	c.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "late/#", QoS: 0}}})
	if _, ok := c.read().(*mqtt.Suback); !ok {
		t.Fatal("want SUBACK")
	}
	st := b.Server.Stats()
	t.Logf("parked %d, parks %d", st.Parked, st.Parks)
	if st.Parks != 1 || st.Parked != 0 {
		t.Fatalf("after one wake-up: %d parks, %d parked now; want 1 and 0", st.Parks, st.Parked)
	}
}
