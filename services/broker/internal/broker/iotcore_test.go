package broker_test

import (
	"testing"
	"time"

	"github.com/mcloudtt/mcloudtt/pkg/mqtt"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/broker"
	"github.com/mcloudtt/mcloudtt/services/broker/internal/iotcore"
)

func startIoTCore(t *testing.T) *testBroker {
	t.Helper()
	m, err := iotcore.New("proj", "", "reg")
	if err != nil {
		t.Fatal(err)
	}
	return startBrokerWith(t, []broker.Option{broker.WithIoTCore(m)})
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
