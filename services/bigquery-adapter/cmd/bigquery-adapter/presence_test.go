package main

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

// rawConnect opens an MQTT 3.1.1 connection to addr as client id with keepAlive seconds (clean
// session) and reads the CONNACK: a client that does exactly what a test tells it, no pings.
func rawConnect(t *testing.T, addr, id string, keepAlive uint16) net.Conn {
	t.Helper()
	return rawConnectWith(t, &net.Dialer{}, addr, id, keepAlive)
}

func rawConnectWith(t *testing.T, d *net.Dialer, addr, id string, keepAlive uint16) net.Conn {
	t.Helper()
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, byte(keepAlive >> 8), byte(keepAlive), 0, byte(len(id))}
	body = append(body, id...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("%s: CONNACK %x, %v", id, ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// TestPresenceThroughTwoBrokers: clients connect to two real broker replicas and their
// connections end in each way a broker tells apart; every connect and disconnect becomes one row
// of the events table, with its cause, replica, remote address, protocol and session flags, the
// two events of a connection sharing its connection id. Health-gateway probe connections are
// left out.
func TestPresenceThroughTwoBrokers(t *testing.T) {
	s := newStack(t)
	brokerBin := proctest.Build(t, "github.com/mcloudtt/mcloudtt/services/broker/cmd/broker")
	addrs := map[string]string{}
	procs := map[string]*proctest.Proc{}
	for _, id := range []string{"broker-a", "broker-b"} {
		addr := proctest.FreeAddr(t)
		p := proctest.Start(t, brokerBin, []string{"BROKER_ID=" + id, "BROKER_MQTT_ADDR=" + addr, "BROKER_HTTP_ADDR=",
			"BROKER_REDIS_ADDRS=" + s.redis.Addr(), "BROKER_LOG_FORMAT=json", "BROKER_MAX_PENDING_BYTES=65536"})
		if !p.WaitOutput("broker started", 20*time.Second) {
			t.Fatalf("%s did not start:\n%s", id, p.Output())
		}
		addrs[id], procs[id] = addr, p
	}
	ad, _ := s.adapter("presence-1", s.emu.Endpoint)
	a, b := addrs["broker-a"], addrs["broker-b"]
	local := map[string][]string{} // client id -> local addresses of its connections, in order

	// normal: a v5 client on b sends DISCONNECT.
	conn, err := net.Dial("tcp", b)
	if err != nil {
		t.Fatal(err)
	}
	local["dev-normal"] = append(local["dev-normal"], conn.LocalAddr().String())
	c5 := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ca, err := c5.Connect(ctx, &paho.Connect{ClientID: "dev-normal", CleanStart: true, KeepAlive: 30,
		Username: "alice", UsernameFlag: true}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("v5 connect: %v %+v", err, ca)
	}
	_ = c5.Disconnect(&paho.Disconnect{})

	// A health-gateway probe connection is no device: no events.
	_ = rawConnect(t, b, bus.ProbeClientPrefix+"gw-broker-b", 60).Close()

	// connection_lost: closed without DISCONNECT.
	lost := rawConnect(t, b, "dev-lost", 60)
	local["dev-lost"] = append(local["dev-lost"], lost.LocalAddr().String())
	_ = lost.Close()

	// protocol_error: a packet of the reserved type 0.
	bad := rawConnect(t, b, "dev-bad", 60)
	local["dev-bad"] = append(local["dev-bad"], bad.LocalAddr().String())
	_, _ = bad.Write([]byte{0x00, 0x00})
	defer bad.Close()

	// keepalive_timeout: keep alive 1 s and then silence.
	quiet := rawConnect(t, a, "dev-quiet", 1)
	local["dev-quiet"] = append(local["dev-quiet"], quiet.LocalAddr().String())
	defer quiet.Close()

	// takeover: connected to a, then the same client id connects to b; then leaves b normally.
	first := rawConnect(t, a, "dev-move", 60)
	local["dev-move"] = append(local["dev-move"], first.LocalAddr().String())
	defer first.Close()
	second := rawConnect(t, b, "dev-move", 60)
	local["dev-move"] = append(local["dev-move"], second.LocalAddr().String())
	_, _ = second.Write([]byte{0xe0, 0x00})
	_ = second.Close()

	// slow_consumer: subscribes at QoS 1 on b with a tiny receive buffer and reads nothing while
	// 8 MB of QoS 1 messages arrive for it; past twice BROKER_MAX_PENDING_BYTES of output b
	// cuts it off.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	slow := rawConnectWith(t, small, b, "dev-slow", 60)
	local["dev-slow"] = append(local["dev-slow"], slow.LocalAddr().String())
	defer slow.Close()
	sub := []byte{0x82, 11, 0, 1, 0, 6, 's', 'l', 'o', 'w', '/', 't', 1}
	if _, err := slow.Write(sub); err != nil {
		t.Fatal(err)
	}
	suback := make([]byte, 5)
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(slow, suback); err != nil || suback[0] != 0x90 || suback[4] != 1 {
		t.Fatalf("SUBACK %x, %v", suback, err)
	}
	flood := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + b).SetClientID("dev-flood").SetAutoReconnect(false))
	if tok := flood.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("flood connect: %v", tok.Error())
	}
	local["dev-flood"] = append(local["dev-flood"], "")
	big := make([]byte, 64<<10)
	var last mqtt.Token
	for i := 0; i < 128; i++ {
		last = flood.Publish("slow/t", 1, false, big)
	}
	last.WaitTimeout(20 * time.Second)
	flood.Disconnect(100)

	// replica_drain: connected to a when a stops.
	drained := rawConnect(t, a, "dev-drain", 60)
	local["dev-drain"] = append(local["dev-drain"], drained.LocalAddr().String())
	defer drained.Close()
	time.Sleep(2 * time.Second) // dev-quiet's keep alive runs out (1.5 s)
	_ = procs["broker-a"].Signal(syscall.SIGTERM)
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	if code, ok := procs["broker-a"].Wait(wctx); !ok || code != 0 {
		t.Fatalf("broker-a did not stop cleanly: %d %v\n%s", code, ok, procs["broker-a"].Output())
	}
	wcancel()

	const want = 18 // nine connections, a connect and a disconnect each
	deadline := time.Now().Add(30 * time.Second)
	for s.count("SELECT COUNT(*) FROM "+events) < want {
		if time.Now().After(deadline) {
			t.Fatalf("events table has %d rows, want %d\n%s", s.count("SELECT COUNT(*) FROM "+events), want, tail(ad.Output(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	cols := []string{"event_id", "event", "connection_id", "client_id", "username", "broker_id", "remote_addr", "protocol",
		"keep_alive", "clean_start", "session_present", "cause", "connected_at", "occurred_at"}
	rows := s.emu.Query(t, "SELECT event_id, event, connection_id, client_id, username, broker_id, remote_addr, protocol, "+
		"keep_alive, clean_start, session_present, cause, connected_at, occurred_at FROM "+events+" ORDER BY occurred_at")
	if len(rows) != want {
		t.Fatalf("%d events, want %d: %v", len(rows), want, rows)
	}
	type connEvents struct{ connect, disconnect map[string]any }
	conns := map[string]*connEvents{}
	var order []string
	for _, r := range rows {
		v := map[string]any{}
		for i, c := range cols {
			v[c] = r[i]
		}
		id := v["connection_id"].(string)
		if conns[id] == nil {
			conns[id] = &connEvents{}
			order = append(order, id)
		}
		switch v["event"] {
		case "connect":
			conns[id].connect = v
		case "disconnect":
			conns[id].disconnect = v
		default:
			t.Fatalf("event %v", v["event"])
		}
	}
	wantCause := map[string][]string{"dev-normal": {"normal"}, "dev-lost": {"connection_lost"}, "dev-bad": {"protocol_error"},
		"dev-quiet": {"keepalive_timeout"}, "dev-move": {"takeover", "normal"}, "dev-drain": {"replica_drain"},
		"dev-slow": {"slow_consumer"}, "dev-flood": {"normal"}}
	wantBroker := map[string][]string{"dev-normal": {"broker-b"}, "dev-lost": {"broker-b"}, "dev-bad": {"broker-b"},
		"dev-quiet": {"broker-a"}, "dev-move": {"broker-a", "broker-b"}, "dev-drain": {"broker-a"},
		"dev-slow": {"broker-b"}, "dev-flood": {"broker-b"}}
	seen := map[string]int{}
	for _, id := range order {
		c := conns[id]
		if c.connect == nil || c.disconnect == nil {
			t.Fatalf("connection %s: connect %v, disconnect %v", id, c.connect, c.disconnect)
		}
		client := c.connect["client_id"].(string)
		n := seen[client]
		seen[client]++
		if n >= len(wantCause[client]) {
			t.Fatalf("unexpected connection of %s: %v", client, c)
		}
		d := c.disconnect
		if d["client_id"] != client || d["cause"] != wantCause[client][n] || c.connect["cause"] != nil {
			t.Errorf("%s connection %d: cause %v, want %s", client, n, d["cause"], wantCause[client][n])
		}
		for _, e := range []map[string]any{c.connect, d} {
			if e["broker_id"] != wantBroker[client][n] || local[client][n] != "" && e["remote_addr"] != local[client][n] {
				t.Errorf("%s connection %d %s: broker %v remote %v, want %s %s", client, n, e["event"], e["broker_id"],
					e["remote_addr"], wantBroker[client][n], local[client][n])
			}
			if !e["connected_at"].(time.Time).Equal(c.connect["occurred_at"].(time.Time)) {
				t.Errorf("%s %s: connected_at %v, connect at %v", client, e["event"], e["connected_at"], c.connect["occurred_at"])
			}
		}
		if !d["occurred_at"].(time.Time).After(c.connect["occurred_at"].(time.Time)) {
			t.Errorf("%s: disconnect before connect", client)
		}
		if c.connect["clean_start"] != true || c.connect["session_present"] != false {
			t.Errorf("%s: clean_start %v session_present %v", client, c.connect["clean_start"], c.connect["session_present"])
		}
	}
	if p := conns[order[0]].connect; p["client_id"] != "dev-normal" || p["protocol"] != "5.0" || p["username"] != "alice" || p["keep_alive"] != int64(30) {
		t.Errorf("v5 connect: %v", p)
	}
	for _, id := range order[1:] {
		if p := conns[id].connect; p["protocol"] != "3.1.1" || p["username"] != nil {
			t.Errorf("3.1.1 connect: %v", p)
		}
	}
	for client, causes := range wantCause {
		if seen[client] != len(causes) {
			t.Errorf("%s: %d connections in the table, want %d", client, seen[client], len(causes))
		}
	}
}
