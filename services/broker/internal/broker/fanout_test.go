package broker_test

import (
	"testing"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
)

// One QoS 0 message to subscribers of both protocol families and with per-subscriber details:
// each gets its own correct packet even though plain copies share one encoding.
func TestFanOutMixedSubscribersGetTheirOwnPacket(t *testing.T) {
	b := startBroker(t)
	v3a := dialRaw(t, b.Addr, mqtt.V311)
	v3b := dialRaw(t, b.Addr, mqtt.V311)
	v5a := dialRaw(t, b.Addr, mqtt.V5)
	v5id := dialRaw(t, b.Addr, mqtt.V5)
	v5alias := dialRaw(t, b.Addr, mqtt.V5)
	for i, r := range []*rawConn{v3a, v3b, v5a, v5id, v5alias} {
		cp := &mqtt.Connect{ClientID: string(rune('a' + i)), CleanStart: true, KeepAlive: 30}
		if r == v5alias {
			cp.Properties.TopicAliasMaximum = 3
			cp.Properties.Set(mqtt.PropTopicAliasMaximum)
		}
		r.connect(cp)
		s := &mqtt.Subscribe{PacketID: 1, Subscriptions: []mqtt.Subscription{{Filter: "fan/#"}}}
		if r == v5id {
			s.Properties.SubscriptionIDs = []uint32{42}
			s.Properties.Set(mqtt.PropSubscriptionID)
		}
		r.send(s)
		r.read()
	}
	pub := dialRaw(t, b.Addr, mqtt.V5)
	pub.connect(&mqtt.Connect{ClientID: "pub", CleanStart: true, KeepAlive: 30})
	p := &mqtt.Publish{Topic: "fan/x", Payload: []byte("payload")}
	p.Properties.ContentType = "text/plain"
	p.Properties.Set(mqtt.PropContentType)
	pub.send(p)

	check := func(r *rawConn, wantCT bool, wantID uint32, wantAlias bool) {
		t.Helper()
		got, ok := r.read().(*mqtt.Publish)
		if !ok || got.Topic != "fan/x" || string(got.Payload) != "payload" {
			t.Fatalf("got %+v", got)
		}
		if ct := got.Properties.Has(mqtt.PropContentType); ct != wantCT {
			t.Fatalf("content type present %v, want %v", ct, wantCT)
		}
		if wantID != 0 && (len(got.Properties.SubscriptionIDs) != 1 || got.Properties.SubscriptionIDs[0] != wantID) {
			t.Fatalf("subscription ids %v", got.Properties.SubscriptionIDs)
		}
		if wantID == 0 && got.Properties.Has(mqtt.PropSubscriptionID) {
			t.Fatal("unexpected subscription id")
		}
		if got.Properties.Has(mqtt.PropTopicAlias) != wantAlias {
			t.Fatalf("topic alias present %v, want %v", !wantAlias, wantAlias)
		}
	}
	check(v3a, false, 0, false)
	check(v3b, false, 0, false)
	check(v5a, true, 0, false)
	check(v5id, true, 42, false)
	check(v5alias, true, 0, true)
}
