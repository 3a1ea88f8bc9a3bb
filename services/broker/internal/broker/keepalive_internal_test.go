//go:build linux

package broker

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// On a listener without TCP keep-alive (as app.listen makes them), a client that asks for no
// MQTT keep alive gets TCP keep-alive on its socket, so a vanished peer is still found; a client
// with a keep alive does not (its MQTT keep alive does that job), and no socket option is set.
func TestTCPKeepAliveOnlyWithoutMQTTKeepAlive(t *testing.T) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveInternal(t, ln)

	for _, v := range []struct {
		version mqtt.Version
		id      string
		ka      uint16
	}{{mqtt.V311, "ka-0-v3", 0}, {mqtt.V311, "ka-30-v3", 30}, {mqtt.V5, "ka-0-v5", 0}, {mqtt.V5, "ka-30-v5", 30}} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		name := "MQTT"
		b, _ := (&mqtt.Connect{ProtocolName: name, Version: v.version, ClientID: v.id, CleanStart: true, KeepAlive: v.ka}).AppendTo(nil, v.version)
		c.Write(b)
		rd := mqtt.NewReader(c, 0)
		rd.SetVersion(v.version)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := rd.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	s.mu.Lock()
	for c := range s.conns {
		got[c.id] = soKeepAlive(t, c.conn)
	}
	s.mu.Unlock()
	want := map[string]int{"ka-0-v3": 1, "ka-30-v3": 0, "ka-0-v5": 1, "ka-30-v5": 0}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: SO_KEEPALIVE %d, want %d (all: %v)", id, got[id], w, got)
		}
	}
}

// soKeepAlive reads SO_KEEPALIVE of the TCP socket under conn.
func soKeepAlive(t *testing.T, conn net.Conn) int {
	t.Helper()
	sc, ok := conn.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no socket", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v, serr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) }); err != nil || serr != nil {
		t.Fatalf("getsockopt: %v %v", err, serr)
	}
	return v
}
