package broker_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/config"
)

// v5Conn is a connected eclipse/paho.golang (MQTT 5.0) client with what it received.
type v5Conn struct {
	*paho.Client
	Connack *paho.Connack
	msgs    *collector
	mu      sync.Mutex
	pubs    []*paho.Publish
	discs   chan *paho.Disconnect
}

func v5Client(t testing.TB, addr string, cp *paho.Connect) *v5Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v := &v5Conn{msgs: newCollector(), discs: make(chan *paho.Disconnect, 4)}
	v.Client = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			v.mu.Lock()
			v.pubs = append(v.pubs, p)
			v.mu.Unlock()
			v.msgs.add(received{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS, Retain: p.Retain})
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { v.discs <- d },
		OnClientError:      func(error) {},
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := v.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %q: %v", cp.ClientID, err)
	}
	v.Connack = ca
	t.Cleanup(func() { _ = v.Disconnect(&paho.Disconnect{}) })
	return v
}

func (v *v5Conn) published(i int) *paho.Publish {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pubs[i]
}

func ctx5(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func sub5(t testing.TB, v *v5Conn, s *paho.Subscribe) *paho.Suback {
	t.Helper()
	sa, err := v.Subscribe(ctx5(t), s)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sa
}

func pub5(t testing.TB, v *v5Conn, p *paho.Publish) {
	t.Helper()
	if _, err := v.Publish(ctx5(t), p); err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
}

func u32(v uint32) *uint32 { return &v }
func u16(v uint16) *uint16 { return &v }

func TestV5SessionExpiryAndSessionPresent(t *testing.T) {
	b := startBroker(t)
	c := v5Client(t, b.Addr, &paho.Connect{ClientID: "exp", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(1)}})
	if c.Connack.SessionPresent {
		t.Fatal("clean start with session present")
	}
	sub5(t, c, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "exp/#", QoS: 1}}})
	_ = c.Disconnect(&paho.Disconnect{})
	time.Sleep(100 * time.Millisecond)
	c = v5Client(t, b.Addr, &paho.Connect{ClientID: "exp", Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(1)}})
	if !c.Connack.SessionPresent {
		t.Fatal("session not kept within its expiry interval")
	}
	_ = c.Disconnect(&paho.Disconnect{})
	time.Sleep(1500 * time.Millisecond)
	c = v5Client(t, b.Addr, &paho.Connect{ClientID: "exp"})
	if c.Connack.SessionPresent {
		t.Fatal("session outlived its expiry interval")
	}
}

func TestV5AssignedClientIDAndConnackProperties(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.MaxKeepAlive = 60; c.TopicAliasMaximum = 5 })
	c := v5Client(t, b.Addr, &paho.Connect{CleanStart: true, KeepAlive: 120})
	p := c.Connack.Properties
	if p == nil || p.AssignedClientID == "" {
		t.Fatalf("no assigned client identifier: %+v", p)
	}
	if p.ServerKeepAlive == nil || *p.ServerKeepAlive != 60 {
		t.Fatalf("server keep alive %v, want 60", p.ServerKeepAlive)
	}
	if p.TopicAliasMaximum == nil || *p.TopicAliasMaximum != 5 {
		t.Fatalf("topic alias maximum %v", p.TopicAliasMaximum)
	}
	if p.MaximumPacketSize == nil || *p.MaximumPacketSize != uint32(b.cfg.MaxPacketSize) {
		t.Fatalf("maximum packet size %v", p.MaximumPacketSize)
	}
}

func TestV5PropertiesForwarded(t *testing.T) {
	b := startBroker(t)
	sub := v5Client(t, b.Addr, &paho.Connect{ClientID: "sub", CleanStart: true})
	sub5(t, sub, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "props/#", QoS: 2}}})
	pub := v5Client(t, b.Addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	pf := byte(1)
	pub5(t, pub, &paho.Publish{Topic: "props/x", QoS: 1, Payload: []byte("héllo"), Properties: &paho.PublishProperties{
		PayloadFormat: &pf, ContentType: "text/plain", ResponseTopic: "reply/here", CorrelationData: []byte{1, 2, 3},
		User: paho.UserProperties{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}, {Key: "b", Value: ""}},
	}})
	sub.msgs.wait(t, 1, 5*time.Second)
	p := sub.published(0).Properties
	if p == nil || p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.ContentType != "text/plain" ||
		p.ResponseTopic != "reply/here" || string(p.CorrelationData) != "\x01\x02\x03" {
		t.Fatalf("properties not forwarded: %+v", p)
	}
	if len(p.User) != 3 || p.User[0] != (paho.UserProperty{Key: "a", Value: "1"}) || p.User[1].Value != "2" {
		t.Fatalf("user properties not kept in order: %+v", p.User)
	}
}

func TestV5MessageExpiryCountsDown(t *testing.T) {
	b := startBroker(t)
	sub := v5Client(t, b.Addr, &paho.Connect{ClientID: "sub", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
	sub5(t, sub, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "exp/#", QoS: 1}}})
	_ = sub.Disconnect(&paho.Disconnect{})
	time.Sleep(50 * time.Millisecond)
	pub := v5Client(t, b.Addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub5(t, pub, &paho.Publish{Topic: "exp/short", QoS: 1, Payload: []byte("short"), Properties: &paho.PublishProperties{MessageExpiry: u32(1)}})
	pub5(t, pub, &paho.Publish{Topic: "exp/long", QoS: 1, Payload: []byte("long"), Properties: &paho.PublishProperties{MessageExpiry: u32(10)}})
	time.Sleep(2100 * time.Millisecond)
	sub = v5Client(t, b.Addr, &paho.Connect{ClientID: "sub", Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(60)}})
	got := sub.msgs.wait(t, 1, 5*time.Second)
	sub.msgs.none(t, 1, 200*time.Millisecond)
	if got[0].Topic != "exp/long" {
		t.Fatalf("expired message delivered: %v", got)
	}
	if e := sub.published(0).Properties.MessageExpiry; e == nil || *e > 8 || *e < 6 {
		t.Fatalf("message expiry not counted down: %v", e)
	}
}

func TestV5SubscriptionIdentifiersAndOverlap(t *testing.T) {
	b := startBroker(t)
	sub := v5Client(t, b.Addr, &paho.Connect{ClientID: "sub", CleanStart: true})
	sub5(t, sub, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: intp(7)},
		Subscriptions: []paho.SubscribeOptions{{Topic: "ids/+", QoS: 1}}})
	sub5(t, sub, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: intp(456789)},
		Subscriptions: []paho.SubscribeOptions{{Topic: "ids/#", QoS: 2}}})
	pub := v5Client(t, b.Addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub5(t, pub, &paho.Publish{Topic: "ids/x", QoS: 2, Payload: []byte("x")})
	got := sub.msgs.wait(t, 1, 5*time.Second)
	sub.msgs.none(t, 1, 200*time.Millisecond) // overlapping subscriptions: one copy [MQTT-3.3.4-2]
	if got[0].QoS != 2 {
		t.Fatalf("delivered at qos %d, want the maximum of the overlapping subscriptions", got[0].QoS)
	}
	// paho.golang exposes only the first identifier; read the packet raw for both.
	r := dialRaw(t, b.Addr, mqtt.V5)
	r.connect(&mqtt.Connect{ClientID: "raw", CleanStart: true, KeepAlive: 30})
	s := &mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "ids/+", QoS: 0}}}
	s.Properties.SubscriptionIDs = []uint32{7}
	s.Properties.Set(mqtt.PropSubscriptionID)
	r.send(s)
	r.read()
	s = &mqtt.Subscribe{PacketID: 2, Subscriptions: []mqtt.Subscription{{Filter: "ids/#", QoS: 0}}}
	s.Properties.SubscriptionIDs = []uint32{456789}
	s.Properties.Set(mqtt.PropSubscriptionID)
	r.send(s)
	r.read()
	pub5(t, pub, &paho.Publish{Topic: "ids/y", QoS: 0, Payload: []byte("y")})
	p, ok := r.read().(*mqtt.Publish)
	if !ok {
		t.Fatal("expected PUBLISH")
	}
	ids := p.Properties.SubscriptionIDs
	if len(ids) != 2 || !(ids[0] == 7 && ids[1] == 456789 || ids[0] == 456789 && ids[1] == 7) {
		t.Fatalf("subscription identifiers %v, want 7 and 456789", ids)
	}
}

func intp(i int) *int { return &i }

func TestV5NoLocalRetainAsPublishedRetainHandling(t *testing.T) {
	b := startBroker(t)
	c := v5Client(t, b.Addr, &paho.Connect{ClientID: "self", CleanStart: true})
	sub5(t, c, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "nl/#", QoS: 1, NoLocal: true}}})
	other := v5Client(t, b.Addr, &paho.Connect{ClientID: "other", CleanStart: true})
	pub5(t, c, &paho.Publish{Topic: "nl/own", QoS: 1, Payload: []byte("own")})
	pub5(t, other, &paho.Publish{Topic: "nl/other", QoS: 1, Payload: []byte("other")})
	got := c.msgs.wait(t, 1, 5*time.Second)
	c.msgs.none(t, 1, 200*time.Millisecond)
	if got[0].Topic != "nl/other" {
		t.Fatalf("no local violated: %v", got)
	}

	// Retain as published keeps the RETAIN flag on live messages.
	rap := v5Client(t, b.Addr, &paho.Connect{ClientID: "rap", CleanStart: true})
	sub5(t, rap, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/+", QoS: 0, RetainAsPublished: true}}})
	pub5(t, other, &paho.Publish{Topic: "rap/a", QoS: 1, Retain: true, Payload: []byte("r")})
	if m := rap.msgs.wait(t, 1, 5*time.Second)[0]; !m.Retain {
		t.Fatal("retain as published: RETAIN flag cleared")
	}

	// Retain handling 1: retained only for a new subscription; 2: never.
	rh := v5Client(t, b.Addr, &paho.Connect{ClientID: "rh", CleanStart: true})
	sub5(t, rh, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/+", QoS: 0, RetainHandling: 1}}})
	rh.msgs.wait(t, 1, 5*time.Second)
	sub5(t, rh, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/+", QoS: 0, RetainHandling: 1}}})
	sub5(t, rh, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/#", QoS: 0, RetainHandling: 2}}})
	rh.msgs.none(t, 1, 300*time.Millisecond)
	sub5(t, rh, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "rap/+", QoS: 0, RetainHandling: 0}}})
	rh.msgs.wait(t, 2, 5*time.Second)
}

func TestV5TopicAliasesBothWays(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.TopicAliasMaximum = 2 })
	// Server to client: the client allows aliases, so the second message on a topic carries the
	// alias alone.
	r := dialRaw(t, b.Addr, mqtt.V5)
	cp := &mqtt.Connect{ClientID: "aliased", CleanStart: true, KeepAlive: 30}
	cp.Properties.TopicAliasMaximum = 4
	cp.Properties.Set(mqtt.PropTopicAliasMaximum)
	r.connect(cp)
	r.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "alias/#"}}})
	r.read()

	// Client to server: an alias set with the first publish and used alone afterwards.
	pr := dialRaw(t, b.Addr, mqtt.V5)
	pr.connect(&mqtt.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30})
	p1 := &mqtt.Publish{Topic: "alias/long/topic/name", Payload: []byte("1")}
	p1.Properties.TopicAlias = 1
	p1.Properties.Set(mqtt.PropTopicAlias)
	p2 := &mqtt.Publish{Topic: "", Payload: []byte("2")}
	p2.Properties.TopicAlias = 1
	p2.Properties.Set(mqtt.PropTopicAlias)
	pr.send(p1, p2)

	a, _ := r.read().(*mqtt.Publish)
	bb, _ := r.read().(*mqtt.Publish)
	if a == nil || bb == nil {
		t.Fatal("expected two PUBLISH")
	}
	if a.Topic != "alias/long/topic/name" || !a.Properties.Has(mqtt.PropTopicAlias) {
		t.Fatalf("first message: topic %q alias %v", a.Topic, a.Properties.TopicAlias)
	}
	if bb.Topic != "" || bb.Properties.TopicAlias != a.Properties.TopicAlias || string(bb.Payload) != "2" {
		t.Fatalf("second message: topic %q alias %d payload %q", bb.Topic, bb.Properties.TopicAlias, bb.Payload)
	}

	// An alias above the broker's maximum is a protocol error: DISCONNECT 0x94 [MQTT-3.3.2-9].
	p3 := &mqtt.Publish{Topic: "alias/x", Payload: []byte("3")}
	p3.Properties.TopicAlias = 3
	p3.Properties.Set(mqtt.PropTopicAlias)
	pr.send(p3)
	got := pr.expectClosed(5 * time.Second)
	if len(got) != 1 || got[0].(*mqtt.Disconnect).ReasonCode != mqtt.TopicAliasInvalid {
		t.Fatalf("want DISCONNECT 0x94, got %v", types(got))
	}
}

func TestV5ReceiveMaximumLimitsInflight(t *testing.T) {
	b := startBroker(t)
	r := dialRaw(t, b.Addr, mqtt.V5)
	cp := &mqtt.Connect{ClientID: "slow", CleanStart: true, KeepAlive: 30}
	cp.Properties.ReceiveMaximum = 2
	cp.Properties.Set(mqtt.PropReceiveMaximum)
	r.connect(cp)
	r.send(&mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "rm/#", QoS: 1}}})
	r.read()
	pub := v5Client(t, b.Addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	for i := 0; i < 4; i++ {
		pub5(t, pub, &paho.Publish{Topic: "rm/x", QoS: 1, Payload: []byte(fmt.Sprint(i))})
	}
	var ids []uint16
	for i := 0; i < 2; i++ {
		ids = append(ids, r.read().(*mqtt.Publish).PacketID)
	}
	if pk, err := r.readErr(300 * time.Millisecond); err == nil {
		t.Fatalf("a third message was sent beyond Receive Maximum 2: %v", pk.Type())
	}
	r.send(&mqtt.Puback{PacketID: ids[0]})
	if p, ok := r.read().(*mqtt.Publish); !ok || string(p.Payload) != "2" {
		t.Fatal("the window did not move after PUBACK")
	}
}

func TestV5ClientMaximumPacketSizeRespected(t *testing.T) {
	b := startBroker(t)
	c := v5Client(t, b.Addr, &paho.Connect{ClientID: "small", CleanStart: true,
		Properties: &paho.ConnectProperties{MaximumPacketSize: u32(64)}})
	sub5(t, c, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "mps/#", QoS: 1}}})
	pub := v5Client(t, b.Addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub5(t, pub, &paho.Publish{Topic: "mps/big", QoS: 1, Payload: make([]byte, 100)})
	pub5(t, pub, &paho.Publish{Topic: "mps/small", QoS: 1, Payload: []byte("ok")})
	got := c.msgs.wait(t, 1, 5*time.Second)
	c.msgs.none(t, 1, 200*time.Millisecond)
	if got[0].Topic != "mps/small" {
		t.Fatalf("got %v", got)
	}
}

func TestV5TakeoverSendsSessionTakenOver(t *testing.T) {
	b := startBroker(t)
	first := v5Client(t, b.Addr, &paho.Connect{ClientID: "dup", CleanStart: true})
	v5Client(t, b.Addr, &paho.Connect{ClientID: "dup", CleanStart: true})
	select {
	case d := <-first.discs:
		if d.ReasonCode != byte(mqtt.SessionTakenOver) {
			t.Fatalf("reason 0x%02X, want 0x8E", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT on takeover")
	}
}

func TestV5WillDelay(t *testing.T) {
	b := startBroker(t)
	watcher := v5Client(t, b.Addr, &paho.Connect{ClientID: "watcher", CleanStart: true})
	sub5(t, watcher, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "wd/#", QoS: 1}}})
	mk := func(id string) *mqtt.Connect {
		cp := rawConnectWithWill(id, "wd/"+id, "bye", 1)
		cp.WillProperties.WillDelay = 1
		cp.WillProperties.Set(mqtt.PropWillDelay)
		cp.Properties.SessionExpiry = 10
		cp.Properties.Set(mqtt.PropSessionExpiry)
		return cp
	}
	// Dropped connection: the will goes out after the delay.
	r := dialRaw(t, b.Addr, mqtt.V5)
	r.connect(mk("late"))
	start := time.Now()
	_ = r.conn.Close()
	watcher.msgs.wait(t, 1, 5*time.Second)
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("will sent after %v, before its delay", d)
	}
	// Reconnecting within the delay cancels it.
	r = dialRaw(t, b.Addr, mqtt.V5)
	cp := mk("back")
	cp.CleanStart = false
	r.connect(cp)
	_ = r.conn.Close()
	time.Sleep(200 * time.Millisecond)
	r = dialRaw(t, b.Addr, mqtt.V5)
	cp = mk("back")
	cp.CleanStart = false
	r.connect(cp)
	watcher.msgs.none(t, 1, 1500*time.Millisecond)
	// DISCONNECT with reason 0x04 asks for the will.
	r.send(&mqtt.Disconnect{ReasonCode: mqtt.DisconnectWithWill})
	watcher.msgs.wait(t, 2, 5*time.Second)
}

func TestV5ReceiveMaximumExceededByClient(t *testing.T) {
	b := startBroker(t, func(c *config.Config) { c.ReceiveMaximum = 3 })
	r := dialRaw(t, b.Addr, mqtt.V5)
	r.connect(&mqtt.Connect{ClientID: "greedy", CleanStart: true, KeepAlive: 30})
	for i := 1; i <= 4; i++ {
		r.send(&mqtt.Publish{QoS: 2, PacketID: uint16(i), Topic: "fc/x", Payload: []byte("x")})
	}
	got := r.expectClosed(5 * time.Second)
	last, ok := got[len(got)-1].(*mqtt.Disconnect)
	if !ok || last.ReasonCode != mqtt.ReceiveMaximumExceeded {
		t.Fatalf("want DISCONNECT 0x93 after three PUBRECs, got %v", types(got))
	}
}

// A v5 CONNECT with Clean Start 0 and no Session Expiry Interval resumes the stored session
// [MQTT-3.1.2-4]: session present, its queued messages delivered. The session then ends with
// that connection [MQTT-3.1.2-11]. (The Paho interoperability suite's offline queueing test.)
func TestV5ResumeWithoutExpiry(t *testing.T) {
	b := startBroker(t)
	sub := v5Client(t, b.Addr, &paho.Connect{ClientID: "sleeper", CleanStart: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: u32(99999)}})
	sub5(t, sub, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "q/#", QoS: 2}}})
	_ = sub.Disconnect(&paho.Disconnect{})
	time.Sleep(50 * time.Millisecond)
	pub := v5Client(t, b.Addr, &paho.Connect{ClientID: "pub", CleanStart: true})
	pub5(t, pub, &paho.Publish{Topic: "q/1", QoS: 1, Payload: []byte("qos 1")})
	pub5(t, pub, &paho.Publish{Topic: "q/2", QoS: 2, Payload: []byte("qos 2")})
	sub = v5Client(t, b.Addr, &paho.Connect{ClientID: "sleeper"})
	if !sub.Connack.SessionPresent {
		t.Fatal("Clean Start 0 without an expiry did not resume the stored session")
	}
	got := sub.msgs.wait(t, 2, 5*time.Second)
	if got[0].Payload != "qos 1" || got[1].Payload != "qos 2" {
		t.Fatalf("got %v", got)
	}
	_ = sub.Disconnect(&paho.Disconnect{})
	time.Sleep(50 * time.Millisecond)
	sub = v5Client(t, b.Addr, &paho.Connect{ClientID: "sleeper"})
	if sub.Connack.SessionPresent {
		t.Fatal("the session outlived a connection with expiry 0")
	}
}
