package broker_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// Each case is a byte conversation the broker must answer exactly as the spec asks: a 3.x
// connection is closed; a v5 one gets DISCONNECT (or CONNACK, before CONNECT is accepted) with the
// reason code, then is closed.
func TestHostileInput(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxPacketSize = 4096 })
	v3conn := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30, 0, 0}    // id "" clean
	v5conn := []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, 0} // id "" clean, no props
	cases := []struct {
		name     string
		v        mqtt.Version
		connect  bool // send a valid CONNECT first
		bytes    []byte
		wantCode mqtt.ReasonCode // v5 DISCONNECT / CONNACK code; ignored for 3.x
		connack  bool            // answer is a CONNACK (refused CONNECT)
	}{
		{"MQTT-3.1.0-1 first packet not CONNECT", 4, false, []byte{0xC0, 0}, 0, false},
		{"MQTT-1.5.5 remaining length 5 bytes before CONNECT", 4, false, []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}, 0, false},
		{"MQTT-3.2.2-15 huge remaining length before CONNECT", 4, false, []byte{0x10, 0xff, 0xff, 0xff, 0x7f}, 0, false},
		{"MQTT-3.1.2-1 bad protocol name", 4, false, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'X', 4, 0x02, 0, 30, 0, 0}, 0, false},
		{"MQTT-3.1.2-2 unsupported level answers 0x01", 4, false, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 9, 0x02, 0, 30, 0, 0}, mqtt.V3UnacceptableProtocolVersion, true},
		{"MQTT-3.1.2-3 reserved connect flag", 4, false, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 30, 0, 0}, 0, false},
		{"MQTT-3.1.2-3 v5 reserved connect flag", 5, false, []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x03, 0, 30, 0, 0, 0}, mqtt.MalformedPacket, true},
		{"MQTT-3.1.0-2 second CONNECT", 4, true, v3conn, 0, false},
		{"MQTT-3.1.0-2 v5 second CONNECT", 5, true, v5conn, mqtt.ProtocolError, false},
		{"MQTT-3.3.2-2 wildcard in PUBLISH topic", 4, true, []byte{0x30, 0x05, 0, 3, 'a', '/', '#'}, 0, false},
		{"MQTT-3.3.2-2 v5 wildcard in PUBLISH topic", 5, true, []byte{0x30, 0x06, 0, 3, 'a', '/', '+', 0}, mqtt.TopicNameInvalid, false},
		{"MQTT-2.2.1-3 PUBLISH QoS 1 packet id 0", 4, true, []byte{0x32, 0x05, 0, 1, 'a', 0, 0}, 0, false},
		{"MQTT-2.2.1-3 v5 PUBLISH QoS 1 packet id 0", 5, true, []byte{0x32, 0x06, 0, 1, 'a', 0, 0, 0}, mqtt.ProtocolError, false},
		{"MQTT-3.3.1-4 PUBLISH QoS 3", 4, true, []byte{0x36, 0x05, 0, 1, 'a', 0, 1}, 0, false},
		{"MQTT-3.3.1-4 v5 PUBLISH QoS 3", 5, true, []byte{0x36, 0x06, 0, 1, 'a', 0, 1, 0}, mqtt.MalformedPacket, false},
		{"MQTT-1.5.4-1 bad UTF-8 topic", 4, true, []byte{0x30, 0x04, 0, 2, 0xc3, 0x28}, 0, false},
		{"MQTT-1.5.4-1 v5 bad UTF-8 topic", 5, true, []byte{0x30, 0x05, 0, 2, 0xc3, 0x28, 0}, mqtt.MalformedPacket, false},
		{"MQTT-1.5.4-2 v5 U+0000 in topic", 5, true, []byte{0x30, 0x05, 0, 2, 'a', 0, 0}, mqtt.MalformedPacket, false},
		{"MQTT-2.2.2-1 v5 repeated property", 5, true, []byte{0x30, 0x0b, 0, 1, 'a', 0x04, 0x01, 0x01, 0x01, 0x01, 'x', 'y', 'z'}, mqtt.ProtocolError, false},
		{"MQTT-3.8.1-1 SUBSCRIBE bad flags", 4, true, []byte{0x80, 0x06, 0, 1, 0, 1, 'a', 0}, 0, false},
		{"MQTT-3.8.3-3 SUBSCRIBE without filters", 4, true, []byte{0x82, 0x02, 0, 1}, 0, false},
		{"MQTT-3.8.3-3 v5 SUBSCRIBE without filters", 5, true, []byte{0x82, 0x03, 0, 1, 0}, mqtt.ProtocolError, false},
		{"MQTT-3.8.3-4 truncated SUBSCRIBE", 4, true, []byte{0x82, 0x05, 0, 1, 0, 5, 'a'}, 0, false},
		{"MQTT-3.8.3-4 v5 truncated SUBSCRIBE", 5, true, []byte{0x82, 0x06, 0, 1, 0, 0, 5, 'a'}, mqtt.MalformedPacket, false},
		{"MQTT-3.10.1-1 UNSUBSCRIBE bad flags", 4, true, []byte{0xa0, 0x05, 0, 1, 0, 1, 'a'}, 0, false},
		{"MQTT-3.12 PINGREQ with a body", 4, true, []byte{0xc0, 0x01, 0}, 0, false},
		{"MQTT-2.1.3-1 reserved packet type 0", 4, true, []byte{0x00, 0x00}, 0, false},
		{"MQTT-2.1.3-1 v5 reserved packet type 0", 5, true, []byte{0x00, 0x00}, mqtt.MalformedPacket, false},
		{"MQTT-3.2 CONNACK from a client", 5, true, []byte{0x20, 0x03, 0, 0, 0}, mqtt.ProtocolError, false},
		{"MQTT-3.15 AUTH in 3.1.1", 4, true, []byte{0xf0, 0x00}, 0, false},
		{"MQTT-2.2.2-2 v5 PUBLISH too large", 5, true, append([]byte{0x30, 0x80, 0x40}, make([]byte, 64)...), mqtt.PacketTooLarge, false},
		{"MQTT-3.3.2-8 v5 unknown topic alias", 5, true, []byte{0x30, 0x07, 0, 0, 0x03, 0x23, 0, 1, 'x'}, mqtt.ProtocolError, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, b.Addr, tc.v)
			if tc.connect {
				if tc.v == 5 {
					r.write(v5conn)
				} else {
					r.write(v3conn)
				}
				if _, ok := r.read().(*mqtt.Connack); !ok {
					t.Fatal("no CONNACK")
				}
			}
			r.write(tc.bytes)
			got := r.expectClosed(5 * time.Second)
			switch {
			case tc.connack:
				if len(got) != 1 || got[0].Type() != mqtt.CONNACK || got[0].(*mqtt.Connack).ReasonCode != tc.wantCode {
					t.Fatalf("want CONNACK 0x%02X then close, got %v", byte(tc.wantCode), describe(got))
				}
			case tc.v == 5 && tc.wantCode != 0:
				if len(got) != 1 || got[0].Type() != mqtt.DISCONNECT || got[0].(*mqtt.Disconnect).ReasonCode != tc.wantCode {
					t.Fatalf("want DISCONNECT 0x%02X then close, got %v", byte(tc.wantCode), describe(got))
				}
			default:
				if len(got) != 0 {
					t.Fatalf("want a plain close, got %v", describe(got))
				}
			}
		})
	}
	// Nobody else was harmed: the broker still serves a normal client.
	r := dialRaw(t, b.Addr, 4)
	r.connect(&mqtt.Connect{ClientID: "after", CleanStart: true, KeepAlive: 30})
	r.send(&mqtt.Pingreq{})
	if _, ok := r.read().(*mqtt.Pingresp); !ok {
		t.Fatal("broker unhealthy after hostile input")
	}
}

func describe(pks []mqtt.Packet) string {
	s := ""
	for _, p := range pks {
		switch p := p.(type) {
		case *mqtt.Disconnect:
			s += fmt.Sprintf("DISCONNECT(0x%02X) ", byte(p.ReasonCode))
		case *mqtt.Connack:
			s += fmt.Sprintf("CONNACK(0x%02X) ", byte(p.ReasonCode))
		default:
			s += p.Type().String() + " "
		}
	}
	return s
}

func TestQoS2PacketIDReusedBeforePubrelDeliversOnce(t *testing.T) {
	b := startBroker(t)
	sub := dialRaw(t, b.Addr, 4)
	sub.connect(&mqtt.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30})
	sub.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "eo/#", QoS: 0}}})
	sub.read()
	pub := dialRaw(t, b.Addr, 4)
	pub.connect(&mqtt.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30})
	p := &mqtt.Publish{QoS: 2, PacketID: 9, Topic: "eo/x", Payload: []byte("once")}
	pub.send(p)
	if rec, ok := pub.read().(*mqtt.Pubrec); !ok || rec.PacketID != 9 {
		t.Fatal("want PUBREC 9")
	}
	p.Dup = true
	pub.send(p) // retransmission before PUBREL [MQTT-4.3.3-10]
	if rec, ok := pub.read().(*mqtt.Pubrec); !ok || rec.PacketID != 9 {
		t.Fatal("want PUBREC 9 again")
	}
	pub.send(&mqtt.Pubrel{PacketID: 9})
	if c, ok := pub.read().(*mqtt.Pubcomp); !ok || c.PacketID != 9 {
		t.Fatal("want PUBCOMP 9")
	}
	// After PUBCOMP the id is free: the same id now is a new message.
	p.Dup = false
	p.Payload = []byte("twice")
	pub.send(p)
	pub.read()
	pub.send(&mqtt.Pubrel{PacketID: 9})
	pub.read()
	a := sub.read().(*mqtt.Publish)
	c := sub.read().(*mqtt.Publish)
	if string(a.Payload) != "once" || string(c.Payload) != "twice" {
		t.Fatalf("got %q, %q", a.Payload, c.Payload)
	}
	if pk, err := sub.readErr(200 * time.Millisecond); err == nil {
		t.Fatalf("duplicate delivery: %v", pk.Type())
	}
}

func TestRedeliveryWithDupOnResume(t *testing.T) {
	b := startBroker(t)
	sub := dialRaw(t, b.Addr, 4)
	sub.connect(&mqtt.Connect{ClientID: "resume", KeepAlive: 30})
	sub.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "rd/#", QoS: 2}}})
	sub.read()
	pub := dialRaw(t, b.Addr, 4)
	pub.connect(&mqtt.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30})
	pub.send(&mqtt.Publish{QoS: 1, PacketID: 1, Topic: "rd/1", Payload: []byte("a")})
	pub.send(&mqtt.Publish{QoS: 2, PacketID: 2, Topic: "rd/2", Payload: []byte("b")})
	first := sub.read().(*mqtt.Publish)
	second := sub.read().(*mqtt.Publish)
	// Acknowledge the QoS 2 message's first half only, then drop the connection.
	sub.send(&mqtt.Pubrec{PacketID: second.PacketID})
	if rel, ok := sub.read().(*mqtt.Pubrel); !ok || rel.PacketID != second.PacketID {
		t.Fatal("want PUBREL")
	}
	_ = sub.conn.Close()

	sub = dialRaw(t, b.Addr, 4)
	ack := sub.connect(&mqtt.Connect{ClientID: "resume", KeepAlive: 30})
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	again := sub.read().(*mqtt.Publish)
	if !again.Dup || again.PacketID != first.PacketID || string(again.Payload) != "a" {
		t.Fatalf("QoS 1 resend: dup=%v id=%d payload=%q", again.Dup, again.PacketID, again.Payload)
	}
	rel, ok := sub.read().(*mqtt.Pubrel)
	if !ok || rel.PacketID != second.PacketID {
		t.Fatal("QoS 2 in release phase must be resumed with PUBREL")
	}
}

// Connections that never send CONNECT are closed by the timeout, and the broker's memory does
// not grow with them.
func TestSilentConnectionsClosedWithBoundedMemory(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.ConnectTimeout = 500 * time.Millisecond })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rssBefore := vmRSS()
	const n = 2000
	conns := make([]*rawConn, n)
	for i := range conns {
		conns[i] = dialRaw(t, b.Addr, 4)
	}
	for _, r := range conns {
		r.expectClosed(5 * time.Second)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.Server.Stats().Connections != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if c := b.Server.Stats().Connections; c != 0 {
		t.Fatalf("%d connections still open", c)
	}
	rssDuring := vmRSS()
	// Two collections: read buffers given back to their sync.Pool survive the first one.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	t.Logf("RSS %d KiB before, %d KiB after %d silent connections were closed; heap in use %d -> %d KiB",
		rssBefore, rssDuring, n, before.HeapInuse>>10, after.HeapInuse>>10)
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 4<<20 {
		t.Fatalf("heap grew by %d bytes after %d closed connections", grow, n)
	}
}
