package broker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// testBroker is a broker serving real TCP on a loopback port for one test.
type testBroker struct {
	*broker.Server
	Addr string
	cfg  config.Config
}

// startBroker starts a broker with the defaults changed by opts; it is closed when the test ends.
func startBroker(t testing.TB, opts ...func(*config.Config)) *testBroker {
	t.Helper()
	return startBrokerWith(t, nil, opts...)
}

// startBrokerWith is startBroker with server options.
func startBrokerWith(t testing.TB, srvOpts []broker.Option, opts ...func(*config.Config)) *testBroker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveBroker(t, ln, srvOpts, opts...)
}

// serveBroker serves a broker on ln until the test ends.
func serveBroker(t testing.TB, ln net.Listener, srvOpts []broker.Option, opts ...func(*config.Config)) *testBroker {
	t.Helper()
	cfg := config.Default()
	cfg.SysInterval = 0
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	log := zerolog.Nop()
	if os.Getenv("BROKER_TEST_LOG") != "" {
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.DebugLevel)
	}
	srv := broker.New(cfg, log, srvOpts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		<-done
		if p := srv.Stats().Panics; p != 0 {
			t.Errorf("broker recovered from %d panics", p)
		}
	})
	return &testBroker{Server: srv, Addr: ln.Addr().String(), cfg: cfg}
}

// rawConn is a hand-driven MQTT connection for what real clients can't send.
type rawConn struct {
	t    testing.TB
	conn net.Conn
	rd   *mqtt.Reader
	v    mqtt.Version
}

func dialRaw(t testing.TB, addr string, v mqtt.Version) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	rd := mqtt.NewReader(bufio.NewReader(conn), 0)
	rd.SetVersion(v)
	return &rawConn{t: t, conn: conn, rd: rd, v: v}
}

// send encodes and writes packets.
func (r *rawConn) send(pks ...mqtt.Packet) {
	r.t.Helper()
	var b []byte
	for _, pk := range pks {
		var err error
		if b, err = pk.AppendTo(b, r.v); err != nil {
			r.t.Fatalf("encode %s: %v", pk.Type(), err)
		}
	}
	r.write(b)
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet, failing the test after 5 s.
func (r *rawConn) read() mqtt.Packet {
	r.t.Helper()
	pk, err := r.readErr(5 * time.Second)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return pk
}

func (r *rawConn) readErr(d time.Duration) (mqtt.Packet, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(d))
	return r.rd.ReadPacket()
}

// expectClosed reads until the broker closes the connection and returns the packets seen before.
func (r *rawConn) expectClosed(d time.Duration) []mqtt.Packet {
	r.t.Helper()
	var got []mqtt.Packet
	for {
		pk, err := r.readErr(d)
		if err == nil {
			got = append(got, pk)
			continue
		}
		if err == io.EOF || isReset(err) {
			return got
		}
		r.t.Fatalf("connection not closed by the broker: %v (got %v)", err, types(got))
		return got
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return err != nil && (errors.As(err, &ne) || err == io.ErrUnexpectedEOF)
}

func types(pks []mqtt.Packet) []string {
	var s []string
	for _, p := range pks {
		s = append(s, p.Type().String())
	}
	return s
}

// connect sends CONNECT and expects a successful CONNACK.
func (r *rawConn) connect(p *mqtt.Connect) *mqtt.Connack {
	r.t.Helper()
	if p.ProtocolName == "" {
		p.ProtocolName = "MQTT"
	}
	p.Version = r.v
	r.send(p)
	ack, ok := r.read().(*mqtt.Connack)
	if !ok {
		r.t.Fatalf("expected CONNACK")
	}
	if ack.ReasonCode != 0 {
		r.t.Fatalf("CONNACK %v", ack.ReasonCode)
	}
	return ack
}

// collector gathers messages delivered to a client callback, safe for concurrent use.
type collector struct {
	mu   sync.Mutex
	msgs []received
	ch   chan struct{}
}

type received struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
	Dup     bool
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) add(m received) {
	c.mu.Lock()
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// wait waits until n messages have arrived or the timeout passes, and returns what arrived.
func (c *collector) wait(t testing.TB, n int, d time.Duration) []received {
	t.Helper()
	deadline := time.After(d)
	for {
		c.mu.Lock()
		got := append([]received(nil), c.msgs...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("want %d messages, got %d: %v", n, len(got), got)
		}
	}
}

// none asserts that nothing more than n messages arrives within d.
func (c *collector) none(t testing.TB, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.msgs) > n {
		t.Fatalf("want %d messages, got %d: %v", n, len(c.msgs), c.msgs)
	}
}

func uniq(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, t.Name(), time.Now().UnixNano())
}

func rawConnectWithWill(id, topic, payload string, qos byte) *mqtt.Connect {
	return &mqtt.Connect{ClientID: id, CleanStart: true, KeepAlive: 30, WillFlag: true, WillTopic: topic,
		WillPayload: []byte(payload), WillQoS: qos}
}

// vmRSS is this process's resident set size in KiB (the in-process broker's included), for logs.
func vmRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	return -1
}
