package main

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"cloud.google.com/go/bigquery"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mcloudtt/mcloudtt/pkg/bus"
	"github.com/mcloudtt/mcloudtt/pkg/proctest"
	"github.com/mcloudtt/mcloudtt/pkg/redistest"
)

// TestEndToEndThroughTwoBrokers: MQTT clients publish through two real broker replicas on one
// Redis; the adapter writes their messages into the emulator with every column right: binary
// payloads intact (and no payload_text), text payloads also as text, v5 user properties in order
// with repeated keys, content type, user name, QoS, retain, the broker that accepted each one.
// $SYS and probe topics are not exported.
func TestEndToEndThroughTwoBrokers(t *testing.T) { endToEndThroughTwoBrokers(t, newStack(t)) }

// The same over a Redis that speaks TLS only, with a password for the default user and an ACL
// user for the services limited to mcloudtt:* keys and channels: brokers and adapter log in as
// that user (password from a file) and verify the server against the test CA.
func TestEndToEndOverTLSWithACLUser(t *testing.T) {
	rs := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword("default-secret"),
		redistest.WithACLUser("mcloudtt-services", "services-secret"))
	endToEndThroughTwoBrokers(t, newStackOn(t, rs))
}

func endToEndThroughTwoBrokers(t *testing.T, s *stack) {
	brokerBin := proctest.Build(t, "github.com/mcloudtt/mcloudtt/services/broker/cmd/broker")
	addrs := map[string]string{}
	for _, id := range []string{"broker-a", "broker-b"} {
		addr := proctest.FreeAddr(t)
		p := proctest.Start(t, brokerBin, append([]string{"BROKER_ID=" + id, "BROKER_MQTT_ADDR=" + addr, "BROKER_HTTP_ADDR=",
			"BROKER_REDIS_ADDRS=" + s.redis.Addr(), "BROKER_LOG_FORMAT=json"}, s.redis.EnvVars("BROKER")...))
		if !p.WaitOutput("broker started", 20*time.Second) {
			t.Fatalf("%s did not start:\n%s", id, p.Output())
		}
		addrs[id] = addr
	}
	ad, _ := s.adapter("e2e-1", s.emu.Endpoint)

	// MQTT 3.1.1 through broker-a.
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addrs["broker-a"]).SetClientID("dev-v3").SetUsername("bob").
		SetProtocolVersion(4).SetAutoReconnect(false)
	c3 := mqtt.NewClient(o)
	if tok := c3.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("v3 connect: %v", tok.Error())
	}
	defer c3.Disconnect(100)
	binary := []byte{0x00, 0xff, 0xfe, 0x80, 0x01, '\n', 0xc3}
	for _, p := range []struct {
		topic   string
		qos     byte
		retain  bool
		payload []byte
	}{
		{"sensors/dev-v3/raw", 1, false, binary},
		{"sensors/dev-v3/temp", 0, true, []byte("21.5")},
		{bus.ProbeTopicPrefix + "x", 1, false, []byte("probe")},
	} {
		if tok := c3.Publish(p.topic, p.qos, p.retain, p.payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("v3 publish %s: %v", p.topic, tok.Error())
		}
	}

	// MQTT 5 through broker-b.
	conn, err := net.Dial("tcp", addrs["broker-b"])
	if err != nil {
		t.Fatal(err)
	}
	c5 := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ca, err := c5.Connect(ctx, &paho.Connect{ClientID: "dev-v5", CleanStart: true, KeepAlive: 30,
		Username: "alice", UsernameFlag: true}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("v5 connect: %v %+v", err, ca)
	}
	defer func() { _ = c5.Disconnect(&paho.Disconnect{}) }()
	if _, err := c5.Publish(ctx, &paho.Publish{Topic: "sensors/dev-v5/json", QoS: 2, Payload: []byte(`{"t":"héllo"}`),
		Properties: &paho.PublishProperties{ContentType: "application/json",
			User: paho.UserProperties{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}, {Key: "unit", Value: "°C"}}}}); err != nil {
		t.Fatalf("v5 publish: %v", err)
	}

	s.waitRows(3, 20*time.Second, ad.Output)
	time.Sleep(500 * time.Millisecond) // anything exported by mistake (the probe) would arrive by now
	cols := []string{"message_id", "broker_id", "client_id", "username", "topic", "qos", "retain", "payload",
		"payload_text", "content_type", "user_properties", "published_at", "ingested_at"}
	rows := s.emu.Query(t, "SELECT message_id, broker_id, client_id, username, topic, qos, retain, payload, payload_text, "+
		"content_type, user_properties, published_at, ingested_at FROM "+table+" ORDER BY topic")
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3 (the probe topic must not be exported): %v", len(rows), rows)
	}
	got := map[string]map[string]bigquery.Value{}
	for _, r := range rows {
		v := values(cols, r)
		got[v["topic"].(string)] = v
		id, _ := v["message_id"].(string)
		if len(id) != 36 {
			t.Errorf("%s: message_id %q", v["topic"], id)
		}
		pub, _ := v["published_at"].(time.Time)
		ing, _ := v["ingested_at"].(time.Time)
		if time.Since(pub) > time.Minute || ing.Before(pub) {
			t.Errorf("%s: published_at %v, ingested_at %v", v["topic"], pub, ing)
		}
	}
	check := func(topic, col string, want bigquery.Value) {
		t.Helper()
		v, ok := got[topic]
		if !ok {
			t.Fatalf("no row for %s", topic)
		}
		switch w := want.(type) {
		case []byte:
			if b, _ := v[col].([]byte); !bytes.Equal(b, w) {
				t.Errorf("%s.%s = %v, want %v", topic, col, v[col], w)
			}
		default:
			if v[col] != want {
				t.Errorf("%s.%s = %#v, want %#v", topic, col, v[col], want)
			}
		}
	}
	raw, temp, js := "sensors/dev-v3/raw", "sensors/dev-v3/temp", "sensors/dev-v5/json"
	check(raw, "broker_id", "broker-a")
	check(raw, "client_id", "dev-v3")
	check(raw, "username", "bob")
	check(raw, "qos", int64(1))
	check(raw, "retain", false)
	check(raw, "payload", binary)
	check(raw, "payload_text", nil)
	check(raw, "content_type", nil)
	check(temp, "qos", int64(0))
	check(temp, "retain", true)
	check(temp, "payload", []byte("21.5"))
	check(temp, "payload_text", "21.5")
	check(js, "broker_id", "broker-b")
	check(js, "client_id", "dev-v5")
	check(js, "username", "alice")
	check(js, "qos", int64(2))
	check(js, "payload_text", `{"t":"héllo"}`)
	check(js, "content_type", "application/json")
	props, _ := got[js]["user_properties"].([]bigquery.Value)
	want := [][2]string{{"a", "1"}, {"a", "2"}, {"unit", "°C"}}
	if len(props) != len(want) {
		t.Fatalf("user_properties %#v", got[js]["user_properties"])
	}
	for i, p := range props {
		kv, _ := p.([]bigquery.Value)
		if len(kv) != 2 || kv[0] != want[i][0] || kv[1] != want[i][1] {
			t.Errorf("user_properties[%d] = %#v, want %v", i, p, want[i])
		}
	}
	if p, _ := got[raw]["user_properties"].([]bigquery.Value); len(p) != 0 {
		t.Errorf("v3 message has user properties %#v", p)
	}
	// payload_json: the JSON object and the bare number are JSON, the binary payload is not.
	jr := s.emu.Query(t, "SELECT topic, JSON_VALUE(payload_json, '$.t'), CAST(JSON_VALUE(payload_json, '$') AS FLOAT64), payload_json IS NULL FROM "+table+" ORDER BY topic")
	if len(jr) != 3 || jr[0][3] != true || jr[1][2] != 21.5 || jr[2][1] != "héllo" {
		t.Errorf("payload_json: %v", jr)
	}
}
