package app

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// rawV3 is a hand-driven 3.1.1 connection, for closing a connection without DISCONNECT.
// rawV3 is a raw MQTT connection, 3.1.1 unless v is set.
type rawV3 struct {
	conn net.Conn
	rd   *mqtt.Reader
	v    mqtt.Version
}

func dialV3(t *testing.T, addr string, p *mqtt.Connect) *rawV3 {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := &rawV3{conn: conn, rd: mqtt.NewReader(bufio.NewReader(conn), 0)}
	r.rd.SetVersion(mqtt.V311)
	p.ProtocolName, p.Version, p.KeepAlive = "MQTT", mqtt.V311, 30
	r.send(t, p)
	if ack, ok := r.read(t).(*mqtt.Connack); !ok || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", ack)
	}
	return r
}

func (r *rawV3) send(t *testing.T, pk mqtt.Packet) {
	t.Helper()
	v := r.v
	if v == 0 {
		v = mqtt.V311
	}
	b, err := pk.AppendTo(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (r *rawV3) read(t *testing.T) mqtt.Packet {
	t.Helper()
	_ = r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	pk, err := r.rd.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// topics reads PUBLISH packets until nothing arrives for d and returns their topics.
func (r *rawV3) topics(t *testing.T, d time.Duration) []string {
	t.Helper()
	var got []string
	for {
		_ = r.conn.SetReadDeadline(time.Now().Add(d))
		pk, err := r.rd.ReadPacket()
		if err != nil {
			return got
		}
		if p, ok := pk.(*mqtt.Publish); ok {
			got = append(got, p.Topic)
			if p.QoS == 1 {
				r.send(t, &mqtt.Puback{PacketID: p.PacketID})
			}
		}
	}
}

// The ACL also governs wills, retained messages and resumed sessions.
func TestACLOnWillsRetainedAndResume(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, `user alice
topic readwrite alice/#
topic read shared/#
topic deny shared/secret
user bob
topic write shared/#
topic write alice/wills/ok
`)
	a := serve(t, func(c *config.Config) { c.ACLFile = acl })
	alice := dialV3(t, a.MQTT, &mqtt.Connect{ClientID: "alice", Username: "alice", UsernameFlag: true})
	alice.send(t, &mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "alice/#", QoS: 1}}})
	alice.read(t)

	// Wills: the ACL in force when the will fires decides, like any publish.
	for _, wt := range []string{"alice/wills/ok", "alice/wills/denied"} {
		bob := dialV3(t, a.MQTT, &mqtt.Connect{ClientID: "bob-" + filepath.Base(wt), Username: "bob", UsernameFlag: true,
			WillFlag: true, WillTopic: wt, WillPayload: []byte("gone"), WillQoS: 1})
		bob.conn.Close()
	}
	if got := alice.topics(t, 500*time.Millisecond); len(got) != 1 || got[0] != "alice/wills/ok" {
		t.Fatalf("wills delivered: %v", got)
	}

	// Retained: stored for both topics, delivered only where alice may read.
	bob := dialV3(t, a.MQTT, &mqtt.Connect{ClientID: "bob", Username: "bob", UsernameFlag: true})
	for _, tp := range []string{"shared/news", "shared/secret"} {
		bob.send(t, &mqtt.Publish{Topic: tp, Retain: true, QoS: 1, PacketID: 1, Payload: []byte("r")})
		bob.read(t)
	}
	alice.send(t, &mqtt.Subscribe{PacketID: 2, Subscriptions: []mqtt.Subscription{{Filter: "shared/#", QoS: 1}}})
	alice.read(t)
	if got := alice.topics(t, 300*time.Millisecond); len(got) != 1 || got[0] != "shared/news" {
		t.Fatalf("retained delivered: %v", got)
	}

	// Resume: alice's persistent session holds a subscription to shared/#; the ACL then takes
	// shared/# away, and on resuming the subscription and the queued messages are gone.
	alice2 := dialV3(t, a.MQTT, &mqtt.Connect{ClientID: "alice-durable", Username: "alice", UsernameFlag: true})
	alice2.send(t, &mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "shared/#", QoS: 1}, {Filter: "alice/#", QoS: 1}}})
	if sa := alice2.read(t).(*mqtt.Suback); sa.ReasonCodes[0] != 1 || sa.ReasonCodes[1] != 1 {
		t.Fatalf("SUBACK %v", sa.ReasonCodes)
	}
	alice2.topics(t, 200*time.Millisecond) // the retained shared/news
	alice2.send(t, &mqtt.Disconnect{})
	time.Sleep(100 * time.Millisecond)
	bob.send(t, &mqtt.Publish{Topic: "shared/news", QoS: 1, PacketID: 2, Payload: []byte("queued")})
	bob.read(t)
	writeFile(t, acl, `user alice
topic readwrite alice/#
user bob
topic write shared/#
topic write alice/#
`)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the reload runs on the broker's signal loop
	alice2 = dialV3(t, a.MQTT, &mqtt.Connect{ClientID: "alice-durable", Username: "alice", UsernameFlag: true})
	if got := alice2.topics(t, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("queued message delivered after the ACL took it away: %v", got)
	}
	bob.send(t, &mqtt.Publish{Topic: "shared/news", QoS: 1, PacketID: 3, Payload: []byte("live")})
	bob.read(t)
	bob.send(t, &mqtt.Publish{Topic: "alice/inbox", QoS: 1, PacketID: 4, Payload: []byte("still")})
	bob.read(t)
	if got := alice2.topics(t, 300*time.Millisecond); len(got) != 1 || got[0] != "alice/inbox" {
		t.Fatalf("after resume: %v (the shared/# subscription should be gone, alice/# kept)", got)
	}
}

// A QoS 2 PUBLISH the ACL refuses ends its exchange with PUBREC 0x87 [MQTT-4.3.3-4]: its packet
// id is free again, and a PUBLISH that reuses it for an allowed topic is delivered (it was once
// answered PUBREC and PUBCOMP and never delivered). For a clean and a persistent publisher.
func TestACLRefusedQoS2PacketIDIsFree(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "user alice\ntopic readwrite alice/#\n")
	a := serve(t, func(c *config.Config) { c.ACLFile = acl })
	sub := dialV3(t, a.MQTT, &mqtt.Connect{ClientID: "alice-sub", Username: "alice", UsernameFlag: true, CleanStart: true})
	sub.send(t, &mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "alice/#", QoS: 2}}})
	sub.read(t)
	for i, persistent := range []bool{false, true} {
		conn, err := net.Dial("tcp", a.MQTT)
		if err != nil {
			t.Fatal(err)
		}
		pub := &rawV3{conn: conn, rd: mqtt.NewReader(bufio.NewReader(conn), 0), v: mqtt.V5}
		pub.rd.SetVersion(mqtt.V5)
		cp := &mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V5, KeepAlive: 30, ClientID: fmt.Sprint("alice-pub-", i),
			Username: "alice", UsernameFlag: true, CleanStart: true}
		if persistent {
			cp.Properties.SessionExpiry = 3600
			cp.Properties.Set(mqtt.PropSessionExpiry)
		}
		pub.send(t, cp)
		if ack, ok := pub.read(t).(*mqtt.Connack); !ok || ack.ReasonCode != 0 {
			t.Fatalf("CONNACK %+v", ack)
		}
		pub.send(t, &mqtt.Publish{QoS: 2, PacketID: 5, Topic: "bob/secret", Payload: []byte("no")})
		if rec, ok := pub.read(t).(*mqtt.Pubrec); !ok || rec.ReasonCode != mqtt.NotAuthorized {
			t.Fatalf("persistent=%v: refused QoS 2 answered %+v, want PUBREC 0x87", persistent, rec)
		}
		payload := fmt.Sprint("yes-", i)
		pub.send(t, &mqtt.Publish{QoS: 2, PacketID: 5, Topic: "alice/ok", Payload: []byte(payload)})
		if rec, ok := pub.read(t).(*mqtt.Pubrec); !ok || rec.ReasonCode != 0 {
			t.Fatalf("persistent=%v: reused id answered %+v, want PUBREC 0", persistent, rec)
		}
		pub.send(t, &mqtt.Pubrel{PacketID: 5})
		if comp, ok := pub.read(t).(*mqtt.Pubcomp); !ok || comp.ReasonCode != 0 {
			t.Fatalf("persistent=%v: PUBREL answered %+v", persistent, comp)
		}
		got, ok := sub.read(t).(*mqtt.Publish)
		if !ok || string(got.Payload) != payload {
			t.Fatalf("persistent=%v: the message on the reused id was not delivered: %+v", persistent, got)
		}
		sub.send(t, &mqtt.Pubrec{PacketID: got.PacketID})
		sub.read(t) // PUBREL
		sub.send(t, &mqtt.Pubcomp{PacketID: got.PacketID})
		conn.Close()
	}
}
