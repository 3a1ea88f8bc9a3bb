package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// iotEnv turns the Cloud IoT Core compatible mode on for registry reg of project proj.
var iotEnv = []string{"BROKER_IOTCORE=true", "BROKER_IOTCORE_PROJECT=proj", "BROKER_IOTCORE_REGISTRY=reg"}

// deviceID is the client id of a device of that registry.
func deviceID(d string) string {
	return "projects/proj/locations/europe-west1/registries/reg/devices/" + d
}

// v5Client is a paho.golang client and the messages it received ("topic=payload").
type v5Client struct {
	*paho.Client
	msgs chan string
	ack  *paho.Connack
	disc chan byte // reason codes of DISCONNECTs from the server
}

// dialV5 connects a v5 client with clean start and no session expiry unless expiry is set.
func dialV5(t *testing.T, addr, id string, expiry uint32) (*v5Client, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	v := &v5Client{msgs: make(chan string, 100), disc: make(chan byte, 4)}
	v.Client = paho.NewClient(paho.ClientConfig{Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			v.msgs <- pr.Packet.Topic + "=" + string(pr.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { v.disc <- d.ReasonCode },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v.ack, err = v.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: expiry == 0,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err == nil {
		t.Cleanup(func() { _ = v.Disconnect(&paho.Disconnect{}) })
	}
	return v, err
}

func mustV5(t *testing.T, addr, id string) *v5Client {
	t.Helper()
	v, err := dialV5(t, addr, id, 0)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	return v
}

// subscribeV5 subscribes to filters at qos and returns the SUBACK's reason codes.
func (v *v5Client) subscribe(t *testing.T, qos byte, filters ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	sa, err := v.Subscribe(ctx, s)
	if sa == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return sa.Reasons
}

// publish sends a QoS 1 message and returns the PUBACK's reason code.
func (v *v5Client) publish(t *testing.T, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := v.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// none checks that nothing arrives on ch for d.
func none(t *testing.T, ch chan string, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %q", m)
	case <-time.After(d):
	}
}

// TestIoTCoreCompatibleMode runs the compatible mode on two replicas of one Redis: devices on
// replica-a, backends on replica-b. Events and state reach a backend subscriber on the other
// replica; a device cannot publish or subscribe to another device's topics or to anything else;
// malformed and foreign client ids are refused at CONNECT; the configuration is delivered on
// subscribe, also from Redis once both replicas were replaced; a command reaches a connected
// device, and one published while the device was away is not delivered when it comes back, even
// with a persistent session asked for, while the v5 backend hears PUBACK 0x10.
func TestIoTCoreCompatibleMode(t *testing.T) {
	rs := redistest.Start(t)
	a := startReplica(t, "replica-a", []string{rs.Addr()}, iotEnv...)
	b := startReplica(t, "replica-b", []string{rs.Addr()}, iotEnv...)

	t.Run("refused client ids", func(t *testing.T) { refusedIDs(t, a.mqtt) })

	backendMsgs, h := collect()
	backend := connectV3(t, b.mqtt, "backend-1", true, h)
	mustOK(t, backend.Subscribe("#", 1, nil)) // sees whatever a device manages to publish
	backend5 := mustV5(t, b.mqtt, "backend-2")
	settled(t, a, b)

	t.Run("events and state", func(t *testing.T) {
		dev := connectV3(t, a.mqtt, deviceID("d1"), true, nil)
		mustOK(t, dev.Publish("/devices/d1/events", 1, false, "e0"))
		mustOK(t, dev.Publish("/devices/d1/events/sensors/temp", 1, false, "e1"))
		mustOK(t, dev.Publish("/devices/d1/state", 0, false, "s0"))
		expect(t, backendMsgs, "/devices/d1/events=e0", "/devices/d1/events/sensors/temp=e1", "/devices/d1/state=s0")
	})
	t.Run("no other device's topics", func(t *testing.T) { confined(t, a, backendMsgs) })
	t.Run("config on subscribe", func(t *testing.T) {
		if rc := backend5.publish(t, "/devices/d3/config", "cfg-1"); rc != 0 {
			t.Fatalf("config publish: PUBACK %#x", rc)
		}
		dev := mustV5(t, a.mqtt, deviceID("d3"))
		if rc := dev.subscribe(t, 2, "/devices/d3/config"); rc[0] != 1 {
			t.Fatalf("config subscription granted %#x, want QoS 1", rc[0])
		}
		expectV5(t, dev.msgs, "/devices/d3/config=cfg-1")
		// A new configuration reaches the subscribed device at once.
		backend5.publish(t, "/devices/d3/config", "cfg-2")
		expectV5(t, dev.msgs, "/devices/d3/config=cfg-2")
	})
	mustOK(t, backend.Unsubscribe("#")) // a subscriber of every command would receive them all
	t.Run("commands to connected devices only", func(t *testing.T) { commands(t, a, b, backend5) })

	// Both replicas replaced: the configuration comes from Redis.
	stopReplica(t, a)
	stopReplica(t, b)
	c := startReplica(t, "replica-c", []string{rs.Addr()}, iotEnv...)
	dev := mustV5(t, c.mqtt, deviceID("d3"))
	dev.subscribe(t, 1, "/devices/d3/config")
	expectV5(t, dev.msgs, "/devices/d3/config=cfg-2")
}

func expectV5(t *testing.T, ch chan string, want string) {
	t.Helper()
	expect(t, ch, want)
}

// refusedIDs: a malformed device path and a device of another registry are refused at CONNECT
// (3.1.1 0x02 identifier rejected, v5 0x85); a backend id and a device of the registry connect.
func refusedIDs(t *testing.T, addr string) {
	for _, id := range []string{
		"projects/proj/locations/europe-west1/registries/reg/devices/",
		"projects/proj/locations/europe-west1/registries/reg/devices/a+b",
		"projects/proj/locations/europe-west1/registries/other/devices/d1",
		"projects/other/locations/europe-west1/registries/reg/devices/d1",
		"projects/proj",
	} {
		o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).SetAutoReconnect(false)
		c := pahov3.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || !errors.Is(tok.Error(), packets.ErrorRefusedIDRejected) {
			t.Errorf("3.1.1 %q: %v, want identifier rejected", id, tok.Error())
			c.Disconnect(10)
		}
		v, err := dialV5(t, addr, id, 0)
		if err == nil || v.ack == nil || v.ack.ReasonCode != 0x85 {
			t.Errorf("v5 %q: %v %+v, want CONNACK 0x85", id, err, v.ack)
		}
	}
	v := mustV5(t, addr, deviceID("d0"))
	if mq := v.ack.Properties.MaximumQoS; mq == nil || *mq != 1 {
		t.Errorf("device CONNACK Maximum QoS %v, want 1", mq)
	}
	mustV5(t, addr, "backend-ok")
}

// confined: a device may not publish to another device's topics, its own config or commands, or
// any other topic (3.1.1: acknowledged and dropped; v5: 0x87), nor subscribe to anything but its
// config and commands/# (3.1.1 SUBACK 0x80, v5 0x87); a QoS 2 PUBLISH ends a 3.1.1 device's
// connection, as in Cloud IoT Core.
func confined(t *testing.T, a *replica, backendMsgs chan string) {
	dev3 := connectV3(t, a.mqtt, deviceID("d1"), true, nil)
	for _, topic := range []string{"/devices/d2/events", "/devices/d2/state", "/devices/d1/config", "/devices/d1/commands", "other/topic"} {
		mustOK(t, dev3.Publish(topic, 1, false, "forbidden"))
	}
	for _, f := range []string{"/devices/d2/config", "/devices/d2/commands/#", "/devices/+/events", "#", "/devices/d1/commands/x", "$share/g//devices/d1/config"} {
		tok := dev3.Subscribe(f, 1, nil)
		mustOK(t, tok)
		res := tok.(*pahov3.SubscribeToken).Result() // keyed by the filter without $share/{group}/
		if len(res) != 1 {
			t.Fatalf("SUBACK results %v", res)
		}
		for _, rc := range res {
			if rc != 0x80 {
				t.Errorf("3.1.1 device subscribed to %q: %#x, want 0x80", f, rc)
			}
		}
	}
	dev5 := mustV5(t, a.mqtt, deviceID("d2"))
	for _, topic := range []string{"/devices/d1/events", "/devices/d1/state", "/devices/d2/config", "other/topic"} {
		if rc := dev5.publish(t, topic, "forbidden"); rc != 0x87 {
			t.Errorf("v5 device published to %q: PUBACK %#x, want 0x87", topic, rc)
		}
	}
	got := dev5.subscribe(t, 1, "/devices/d1/config", "/devices/d1/commands/#", "#", "/devices/d2/config", "/devices/d2/commands/#")
	if want := []byte{0x87, 0x87, 0x87, 1, 1}; string(got) != string(want) {
		t.Errorf("v5 SUBACK %x, want %x", got, want)
	}
	// The backend saw none of the refused messages; its own device's events still flow.
	if rc := dev5.publish(t, "/devices/d2/events", "ok"); rc != 0 {
		t.Errorf("own events: PUBACK %#x", rc)
	}
	expect(t, backendMsgs, "/devices/d2/events=ok")

	lost := make(chan struct{})
	o := pahov3.NewClientOptions().AddBroker("tcp://" + a.mqtt).SetClientID(deviceID("d4")).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectionLostHandler(func(pahov3.Client, error) { close(lost) })
	c := pahov3.NewClient(o)
	mustOK(t, c.Connect())
	c.Publish("/devices/d4/events", 2, false, "qos2")
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a 3.1.1 device's QoS 2 PUBLISH did not end its connection")
	}
	none(t, backendMsgs, 300*time.Millisecond)
}

// commands: a command reaches the connected device on the other replica (PUBACK 0); a command for
// a device that is away goes nowhere (PUBACK 0x10) and is not delivered when the device
// reconnects, though it asked for a persistent session; its CONNACK says no session was kept.
func commands(t *testing.T, a, b *replica, backend5 *v5Client) {
	var mu sync.Mutex
	var got []string
	h := func(_ pahov3.Client, m pahov3.Message) {
		mu.Lock()
		got = append(got, m.Topic()+"="+string(m.Payload()))
		mu.Unlock()
	}
	dev := connectV3(t, a.mqtt, deviceID("d5"), false, h)
	mustOK(t, dev.Subscribe("/devices/d5/commands/#", 1, nil))
	settled(t, a, b)
	if rc := backend5.publish(t, "/devices/d5/commands/reboot", "now"); rc != 0 {
		t.Fatalf("command to a connected device: PUBACK %#x", rc)
	}
	if rc := backend5.publish(t, "/devices/d5/commands", "top"); rc != 0 {
		t.Fatalf("command to a connected device: PUBACK %#x", rc)
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	if strings.Join(got, ",") != "/devices/d5/commands/reboot=now,/devices/d5/commands=top" {
		t.Fatalf("commands received: %v", got)
	}
	dev.Disconnect(50)
	settled(t, a, b)
	if rc := backend5.publish(t, "/devices/d5/commands/reboot", "late"); rc != 0x10 {
		t.Fatalf("command to a device that is away: PUBACK %#x, want 0x10 no matching subscribers", rc)
	}
	o := pahov3.NewClientOptions().AddBroker("tcp://" + a.mqtt).SetClientID(deviceID("d5")).SetProtocolVersion(4).
		SetCleanSession(false).SetAutoReconnect(false).SetDefaultPublishHandler(h)
	c := pahov3.NewClient(o)
	tok := c.Connect()
	mustOK(t, tok)
	defer c.Disconnect(20)
	if tok.(*pahov3.ConnectToken).SessionPresent() {
		t.Error("a device's session was kept")
	}
	mustOK(t, c.Subscribe("/devices/d5/commands/#", 1, nil))
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("a command published while the device was away was delivered: %v", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopReplica ends a replica with SIGTERM and waits for it.
func stopReplica(t *testing.T, r *replica) {
	t.Helper()
	_ = r.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, ok := r.Wait(ctx); !ok {
		t.Fatalf("%s did not stop\n%s", r.id, r.Output())
	}
}
