package broker

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// A panic while handling one connection is recovered: that connection is closed, the process and
// the other connections carry on, and the panic is counted.
func TestPanicInOneConnectionIsContained(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveInternal(t, ln)
	// A cluster seam that panics stands in for a bug on the SUBSCRIBE path.
	s.cluster = panicCluster{s.cluster}

	dial := func(id string) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := (&mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V311, ClientID: id, CleanStart: true, KeepAlive: 30}).AppendTo(nil, mqtt.V311)
		c.Write(b)
		rd := mqtt.NewReader(c, 0)
		rd.SetVersion(mqtt.V311)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := rd.ReadPacket(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	victim, healthy := dial("victim"), dial("healthy")
	b, _ := (&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "boom"}}}).AppendTo(nil, mqtt.V311)
	victim.Write(b)
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for {
		if _, err := victim.Read(buf); err != nil {
			break // closed by the broker after the panic
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.stats.panics.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.stats.panics.Load(); n != 1 {
		t.Fatalf("panics counted: %d", n)
	}
	ping, _ := (&mqtt.Pingreq{}).AppendTo(nil, mqtt.V311)
	healthy.Write(ping)
	healthy.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := healthy.Read(buf); err != nil || n != 2 || buf[0] != 0xD0 {
		t.Fatalf("the other connection suffered: %v", err)
	}
}

// serveInternal serves a broker with the default configuration (no $SYS) on ln until the test
// ends.
func serveInternal(t *testing.T, ln net.Listener) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.SysInterval = 0
	s := New(cfg, zerolog.Nop())
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

type panicCluster struct{ Cluster }

func (panicCluster) AddFilter(string, bool) func() { panic("injected") }
