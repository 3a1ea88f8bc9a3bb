package main

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/proctest"
)

// TestIoTCoreDevicesToBigQuery: two broker replicas in the Cloud IoT Core compatible mode; a
// 3.1.1 device publishes events (with a subfolder) and state through broker-a, a v5 device
// through broker-b; a backend subscribed on broker-b receives the events of both; the adapter
// writes every message into the emulator with device_id taken from the device's client id, and
// NULL for the backend's own configuration message. Both write paths are run.
func TestIoTCoreDevicesToBigQuery(t *testing.T) {
	for _, api := range []string{"storage", "insertall"} {
		t.Run(api, func(t *testing.T) { iotCoreToBigQuery(t, api) })
	}
}

func iotCoreToBigQuery(t *testing.T, api string) {
	const prefix = "projects/proj/locations/europe-west1/registries/reg/devices/"
	s := newStack(t)
	brokerBin := proctest.Build(t, "github.com/mcloudtt/mcloudtt/services/broker/cmd/broker")
	addrs := map[string]string{}
	for _, id := range []string{"broker-a", "broker-b"} {
		addr := proctest.FreeAddr(t)
		p := proctest.Start(t, brokerBin, []string{"BROKER_ID=" + id, "BROKER_MQTT_ADDR=" + addr, "BROKER_HTTP_ADDR=",
			"BROKER_REDIS_ADDRS=" + s.redis.Addr(), "BROKER_LOG_FORMAT=json", "BROKER_IOTCORE=true",
			"BROKER_IOTCORE_PROJECT=proj", "BROKER_IOTCORE_REGISTRY=reg", "BROKER_EXPORT_PRESENCE=false"})
		if !p.WaitOutput("broker started", 20*time.Second) {
			t.Fatalf("%s did not start:\n%s", id, p.Output())
		}
		addrs[id] = addr
	}
	ad, _ := s.adapter("iot-1", s.emu.Endpoint, "ADAPTER_BIGQUERY_API="+api)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	backend, got := iotBackend(ctx, t, addrs["broker-b"])
	time.Sleep(300 * time.Millisecond) // broker-a's route cache has the backend's filter

	o := mqtt.NewClientOptions().AddBroker("tcp://" + addrs["broker-a"]).SetClientID(prefix + "pump-1").
		SetUsername("unused").SetPassword("a-jwt").SetProtocolVersion(4).SetAutoReconnect(false)
	d3 := mqtt.NewClient(o)
	if tok := d3.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer d3.Disconnect(100)
	for _, p := range [][2]string{{"/devices/pump-1/events", "e1"}, {"/devices/pump-1/events/flow", "e2"}, {"/devices/pump-1/state", "s1"}} {
		if tok := d3.Publish(p[0], 1, false, p[1]); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("device publish %s: %v", p[0], tok.Error())
		}
	}
	conn5, err := net.Dial("tcp", addrs["broker-b"])
	if err != nil {
		t.Fatal(err)
	}
	d5 := paho.NewClient(paho.ClientConfig{Conn: conn5})
	if ca, err := d5.Connect(ctx, &paho.Connect{ClientID: prefix + "valve-2", CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("v5 device connect: %v %+v", err, ca)
	}
	defer func() { _ = d5.Disconnect(&paho.Disconnect{}) }()
	if _, err := d5.Publish(ctx, &paho.Publish{Topic: "/devices/valve-2/events", QoS: 1, Payload: []byte("e3")}); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.Publish(ctx, &paho.Publish{Topic: "/devices/valve-2/config", QoS: 1, Payload: []byte("c1")}); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case m := <-got:
			seen[m] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("backend received %v; want the three events", seen)
		}
	}
	for _, w := range []string{"/devices/pump-1/events=e1", "/devices/pump-1/events/flow=e2", "/devices/valve-2/events=e3"} {
		if !seen[w] {
			t.Errorf("backend did not receive %s: %v", w, seen)
		}
	}

	s.waitRows(5, 20*time.Second, ad.Output)
	checkIoTRows(t, s, prefix)
}

// checkIoTRows checks the five rows of iotCoreToBigQuery: device_id from each device's client id,
// NULL for the backend's configuration.
func checkIoTRows(t *testing.T, s *stack, prefix string) {
	t.Helper()
	rows := s.emu.Query(t, "SELECT topic, client_id, device_id, broker_id FROM "+table+" ORDER BY topic")
	want := [][4]any{
		{"/devices/pump-1/events", prefix + "pump-1", "pump-1", "broker-a"},
		{"/devices/pump-1/events/flow", prefix + "pump-1", "pump-1", "broker-a"},
		{"/devices/pump-1/state", prefix + "pump-1", "pump-1", "broker-a"},
		{"/devices/valve-2/config", "backend", nil, "broker-b"},
		{"/devices/valve-2/events", prefix + "valve-2", "valve-2", "broker-b"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %v", len(rows), len(want), rows)
	}
	for i, w := range want {
		for j := range w {
			if rows[i][j] != w[j] {
				t.Errorf("row %d = %v, want %v", i, rows[i], w)
				break
			}
		}
	}
}

// iotBackend connects the backend to addr (a v5 client, so that it also sets a configuration),
// subscribed to every device's events; got receives "topic=payload".
func iotBackend(ctx context.Context, t *testing.T, addr string) (*paho.Client, chan string) {
	t.Helper()
	got := make(chan string, 10)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	backend := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet.Topic + "=" + string(pr.Packet.Payload)
			return true, nil
		}}})
	if ca, err := backend.Connect(ctx, &paho.Connect{ClientID: "backend", CleanStart: true, KeepAlive: 30}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("backend connect: %v %+v", err, ca)
	}
	t.Cleanup(func() { _ = backend.Disconnect(&paho.Disconnect{}) })
	if _, err := backend.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "/devices/+/events/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return backend, got
}
