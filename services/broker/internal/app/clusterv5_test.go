package app

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

func v5client(t *testing.T, addr, id string, got chan *paho.Publish) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{Conn: conn}
	if got != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
		}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ca)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

// MQTT 5 properties travel between replicas unchanged (user properties in order, content type,
// response topic, correlation data, payload format), message expiry is counted down, and the
// receiving replica adds its subscription identifiers.
func TestClusterKeepsV5Properties(t *testing.T) {
	rs := redistest.Start(t)
	rep := replicas(t, rs, 2, nil)
	got := make(chan *paho.Publish, 10)
	sub := v5client(t, rep[1].MQTT, "v5-sub", got)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subID := 42
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &subID},
		Subscriptions: []paho.SubscribeOptions{{Topic: "req/#", QoS: 2}}}); err != nil {
		t.Fatal(err)
	}
	settled(t, rep...)
	pub := v5client(t, rep[0].MQTT, "v5-pub", nil)
	expiry := uint32(60)
	format := byte(1)
	sent := &paho.Publish{Topic: "req/x", QoS: 2, Payload: []byte("hello"), Properties: &paho.PublishProperties{
		ContentType: "text/plain", ResponseTopic: "resp/x", CorrelationData: []byte{0, 1, 2, 255},
		PayloadFormat: &format, MessageExpiry: &expiry,
		User: paho.UserProperties{{Key: "k", Value: "1"}, {Key: "k", Value: "2"}, {Key: "a", Value: ""}}}}
	if _, err := pub.Publish(ctx, sent); err != nil {
		t.Fatal(err)
	}
	var p *paho.Publish
	select {
	case p = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
	}
	pp := p.Properties
	if string(p.Payload) != "hello" || p.QoS != 2 || pp == nil || pp.ContentType != "text/plain" || pp.ResponseTopic != "resp/x" ||
		string(pp.CorrelationData) != "\x00\x01\x02\xff" || pp.PayloadFormat == nil || *pp.PayloadFormat != 1 {
		t.Fatalf("received %+v props %+v", p, pp)
	}
	if len(pp.User) != 3 || pp.User[0] != (paho.UserProperty{Key: "k", Value: "1"}) || pp.User[1] != (paho.UserProperty{Key: "k", Value: "2"}) || pp.User[2] != (paho.UserProperty{Key: "a", Value: ""}) {
		t.Fatalf("user properties %+v", pp.User)
	}
	if pp.MessageExpiry == nil || *pp.MessageExpiry == 0 || *pp.MessageExpiry > 60 {
		t.Fatalf("message expiry %v", pp.MessageExpiry)
	}
	if pp.SubscriptionIdentifier == nil || *pp.SubscriptionIdentifier != 42 {
		t.Fatalf("subscription identifier %v", pp.SubscriptionIdentifier)
	}
}

// A PUBACK means Redis took the message for every replica it goes to: with Redis gone, a v5
// publisher whose message had a subscriber on another replica hears 0x80 instead of success,
// while a message for local subscribers only is still acknowledged with success.
func TestClusterPubackWaitsForRedis(t *testing.T) {
	rs := redistest.Start(t)
	rep := replicas(t, rs, 2, nil)
	remote := v5client(t, rep[1].MQTT, "remote-sub", make(chan *paho.Publish, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := remote.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "far/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	settled(t, rep...)
	pub := v5client(t, rep[0].MQTT, "v5-pub", nil)
	if r, err := pub.Publish(ctx, &paho.Publish{Topic: "far/a", QoS: 1, Payload: []byte("1")}); err != nil || r.ReasonCode != 0 {
		t.Fatalf("with Redis up: %v %+v", err, r)
	}
	rs.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := get(t, "http://"+rep[0].HTTP+"/readyz")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("replica still ready without Redis")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, err := pub.Publish(ctx, &paho.Publish{Topic: "far/a", QoS: 1, Payload: []byte("2")})
	if err == nil && r.ReasonCode == 0 {
		t.Fatal("PUBACK success for a message Redis never took")
	}
	if r == nil || r.ReasonCode != 0x80 {
		t.Fatalf("want PUBACK 0x80 (unspecified error), got %v %+v", err, r)
	}
	if r, err := pub.Publish(ctx, &paho.Publish{Topic: "near/a", QoS: 1, Payload: []byte("3")}); err != nil || r.ReasonCode != 0 {
		t.Fatalf("local-only message: %v %+v", err, r)
	}
}
