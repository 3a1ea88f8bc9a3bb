package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/auth"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/iotcore"
)

func startIoTCore(t *testing.T, opts ...broker.Option) *testBroker {
	t.Helper()
	m, err := iotcore.New("proj", "", "reg")
	if err != nil {
		t.Fatal(err)
	}
	return startBrokerWith(t, append(opts, broker.WithIoTCore(m)))
}

const devicePath = "projects/proj/locations/us-central1/registries/reg/devices/"

// TestIoTCoreV5DeviceLimits: a v5 device hears in its CONNACK that it may publish at QoS 1 at
// most and that its session ends with the connection; a QoS 2 PUBLISH, which the CONNACK
// forbade, ends the connection with DISCONNECT 0x9B; a will at QoS 2 refuses the CONNECT (0x9B,
// [MQTT-3.2.2-12]). A backend client is told none of this.
func TestIoTCoreV5DeviceLimits(t *testing.T) {
	b := startIoTCore(t)
	c := dialRaw(t, b.Addr, mqtt.V5)
	p := &mqtt.Connect{ClientID: devicePath + "d1", KeepAlive: 30}
	p.Properties.SessionExpiry = 3600
	p.Properties.Set(mqtt.PropSessionExpiry)
	ack := c.connect(p)
	if !ack.Properties.Has(mqtt.PropMaximumQoS) || ack.Properties.MaximumQoS != 1 {
		t.Errorf("device CONNACK Maximum QoS: %v %d", ack.Properties.Has(mqtt.PropMaximumQoS), ack.Properties.MaximumQoS)
	}
	if !ack.Properties.Has(mqtt.PropSessionExpiry) || ack.Properties.SessionExpiry != 0 {
		t.Errorf("device CONNACK Session Expiry: %v %d", ack.Properties.Has(mqtt.PropSessionExpiry), ack.Properties.SessionExpiry)
	}
	c.send(&mqtt.Publish{Topic: "/devices/d1/events", QoS: 2, PacketID: 1, Payload: []byte("x")})
	got := c.expectClosed(5 * time.Second)
	if len(got) != 1 || got[0].(*mqtt.Disconnect).ReasonCode != mqtt.QoSNotSupported {
		t.Fatalf("after a QoS 2 PUBLISH: %v, want DISCONNECT 0x9B", types(got))
	}

	w := dialRaw(t, b.Addr, mqtt.V5)
	w.send(&mqtt.Connect{ProtocolName: "MQTT", Version: mqtt.V5, ClientID: devicePath + "d2", CleanStart: true,
		WillFlag: true, WillQoS: 2, WillTopic: "/devices/d2/events", WillPayload: []byte("bye")})
	if a, ok := w.read().(*mqtt.Connack); !ok || a.ReasonCode != mqtt.QoSNotSupported {
		t.Fatalf("will at QoS 2: %+v, want CONNACK 0x9B", a)
	}

	be := dialRaw(t, b.Addr, mqtt.V5)
	if a := be.connect(&mqtt.Connect{ClientID: "backend", CleanStart: true}); a.Properties.Has(mqtt.PropMaximumQoS) {
		t.Errorf("backend CONNACK carries Maximum QoS %d", a.Properties.MaximumQoS)
	}
}

// TestIoTCoreDevicesBesideAnACLFile: with an ACL file, a device keeps its own rules (the file
// grants anonymous clients nothing, yet the device publishes its events and gets its config),
// while backends keep the file's: the backend may set configurations and read events but not
// send commands, and another client may not set a configuration.
func TestIoTCoreDevicesBesideAnACLFile(t *testing.T) {
	acl := filepath.Join(t.TempDir(), "acl")
	rules := "user backend\ntopic write /devices/+/config\ntopic read /devices/+/events/#\n"
	if err := os.WriteFile(acl, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := auth.NewStore("", acl, true)
	if err != nil {
		t.Fatal(err)
	}
	b := startIoTCore(t, broker.WithAuth(st))
	backend := v5Client(t, b.Addr, &paho.Connect{ClientID: "backend-1", CleanStart: true, Username: "backend", UsernameFlag: true})
	sub5(t, backend, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "/devices/+/events/#", QoS: 1}}})
	dev := v5Client(t, b.Addr, &paho.Connect{ClientID: devicePath + "d1", CleanStart: true})
	if sa := sub5(t, dev, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "/devices/d1/config", QoS: 1}}}); sa.Reasons[0] != 1 {
		t.Fatalf("device config subscription: %#x", sa.Reasons[0])
	}
	pub5(t, dev, &paho.Publish{Topic: "/devices/d1/events", QoS: 1, Payload: []byte("e")})
	backend.msgs.wait(t, 1, 5*time.Second)
	pub5(t, backend, &paho.Publish{Topic: "/devices/d1/config", QoS: 1, Payload: []byte("c1")})
	if got := dev.msgs.wait(t, 1, 5*time.Second); got[0].Payload != "c1" {
		t.Fatalf("device received %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if pr, _ := backend.Publish(ctx, &paho.Publish{Topic: "/devices/d1/commands", QoS: 1, Payload: []byte("x")}); pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("backend without the right to send commands: %+v, want PUBACK 0x87", pr)
	}
	other := v5Client(t, b.Addr, &paho.Connect{ClientID: "other", CleanStart: true})
	if pr, _ := other.Publish(ctx, &paho.Publish{Topic: "/devices/d1/config", QoS: 1, Payload: []byte("evil")}); pr == nil || pr.ReasonCode != 0x87 {
		t.Errorf("client without the right to set configurations: %+v, want PUBACK 0x87", pr)
	}
	dev.msgs.none(t, 1, 300*time.Millisecond)
}
